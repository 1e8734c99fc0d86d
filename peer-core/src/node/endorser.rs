//! `protos.Endorser`: signed proposals for the system chaincodes (cscc, qscc).

use std::sync::Arc;
use std::time::Duration;

use proto::protos::endorser_server::Endorser;
use tonic::{Request, Response, Status};

use super::channels::Channels;
use crate::env::Clock;
use crate::msp::LocalMsp;

/// `protos.Endorser`.
pub struct EndorserService {
    #[allow(dead_code)]
    channels: Arc<Channels>,
    /// Signs endorsements.
    #[allow(dead_code)]
    msp: LocalMsp,
    #[allow(dead_code)]
    clock: Arc<dyn Clock>,
    /// `peer.authentication.timewindow`: how far a proposal's timestamp may be from now.
    #[allow(dead_code)]
    time_window: Duration,
}

impl EndorserService {
    pub fn new(channels: Arc<Channels>, msp: LocalMsp, clock: Arc<dyn Clock>, time_window: Duration) -> EndorserService {
        EndorserService { channels, msp, clock, time_window }
    }
}

#[tonic::async_trait]
impl Endorser for EndorserService {
    async fn process_proposal(&self, _request: Request<proto::protos::SignedProposal>) -> Result<Response<proto::protos::ProposalResponse>, Status> {
        Err(Status::unimplemented("proposals for system chaincodes arrive with the ledger (issue #7)"))
    }
}
