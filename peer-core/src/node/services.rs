//! The gRPC services on the peer port that are not built yet (Endorser and Deliver have their
//! own modules).
//!
//! `gossip.Gossip` is served by the comm layer (`gossip::comm`). The rest of each service here is
//! built by later issues; until then a call gets a prompt UNIMPLEMENTED status naming what is
//! missing, never a hang.

use proto::discovery::discovery_server::Discovery;
use tonic::{Request, Response, Status};

/// `discovery.Discovery`.
#[derive(Debug, Default)]
pub struct DiscoveryService;

#[tonic::async_trait]
impl Discovery for DiscoveryService {
    async fn discover(&self, _request: Request<proto::discovery::SignedRequest>) -> Result<Response<proto::discovery::Response>, Status> {
        Err(Status::unimplemented("discovery queries arrive with gossip membership (issue #5)"))
    }
}
