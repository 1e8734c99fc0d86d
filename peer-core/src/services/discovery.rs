//! `discovery.Discovery` on the peer port, which peer-core does not serve yet.
//!
//! A call to it gets a
//! prompt UNIMPLEMENTED status, never a hang. Its text is for the client: grpc-go's words for a
//! method a server does not implement, then what this peer does not support. Notes for us
//! (plans, issue numbers) stay in comments; they never go on the wire.

use proto::discovery::discovery_server::Discovery;
use tonic::{Request, Response, Status};

/// `discovery.Discovery`.
#[derive(Debug, Default)]
pub struct DiscoveryService;

#[tonic::async_trait]
impl Discovery for DiscoveryService {
    async fn discover(&self, _request: Request<proto::discovery::SignedRequest>) -> Result<Response<proto::discovery::Response>, Status> {
        Err(Status::unimplemented("method Discover not implemented: service discovery is not supported by this peer"))
    }
}
