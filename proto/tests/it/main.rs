//! Integration tests for the generated Fabric protos: hand-computed golden encodings,
//! seeded property tests, and checks that the gRPC stubs exist under Fabric's names.

mod golden;
mod props;
mod services;
