//! The gRPC services on the peer port, as far as they exist so far.
//!
//! `gossip.Gossip` is served by the comm layer (`gossip::comm`). The rest of each service here is
//! built by later issues; until then a call gets a prompt UNIMPLEMENTED status naming what is
//! missing, never a hang.

use std::pin::Pin;

use proto::protos::deliver_server::Deliver;
use proto::protos::endorser_server::Endorser;
use proto::discovery::discovery_server::Discovery;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// `protos.Deliver`.
#[derive(Debug, Default)]
pub struct DeliverService;

#[tonic::async_trait]
impl Deliver for DeliverService {
    type DeliverStream = BoxStream<proto::protos::DeliverResponse>;
    type DeliverFilteredStream = BoxStream<proto::protos::DeliverResponse>;
    type DeliverWithPrivateDataStream = BoxStream<proto::protos::DeliverResponse>;

    async fn deliver(&self, _request: Request<Streaming<proto::common::Envelope>>) -> Result<Response<Self::DeliverStream>, Status> {
        Err(Status::unimplemented("the Deliver service arrives with the ledger (issue #7)"))
    }

    async fn deliver_filtered(&self, _request: Request<Streaming<proto::common::Envelope>>) -> Result<Response<Self::DeliverFilteredStream>, Status> {
        Err(Status::unimplemented("the Deliver service arrives with the ledger (issue #7)"))
    }

    async fn deliver_with_private_data(
        &self,
        _request: Request<Streaming<proto::common::Envelope>>,
    ) -> Result<Response<Self::DeliverWithPrivateDataStream>, Status> {
        Err(Status::unimplemented("private data is not supported by peer-core"))
    }
}

/// `discovery.Discovery`.
#[derive(Debug, Default)]
pub struct DiscoveryService;

#[tonic::async_trait]
impl Discovery for DiscoveryService {
    async fn discover(&self, _request: Request<proto::discovery::SignedRequest>) -> Result<Response<proto::discovery::Response>, Status> {
        Err(Status::unimplemented("discovery queries arrive with gossip membership (issue #5)"))
    }
}

/// `protos.Endorser`.
#[derive(Debug, Default)]
pub struct EndorserService;

#[tonic::async_trait]
impl Endorser for EndorserService {
    async fn process_proposal(&self, _request: Request<proto::protos::SignedProposal>) -> Result<Response<proto::protos::ProposalResponse>, Status> {
        Err(Status::unimplemented("proposals for system chaincodes arrive with the ledger (issue #7)"))
    }
}
