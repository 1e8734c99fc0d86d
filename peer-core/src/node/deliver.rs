//! `protos.Deliver`: blocks of a joined channel, streamed to clients per SeekInfo.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use proto::protos::deliver_server::Deliver;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::channels::Channels;
use crate::env::Clock;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// `protos.Deliver`.
pub struct DeliverService {
    #[allow(dead_code)]
    channels: Arc<Channels>,
    #[allow(dead_code)]
    clock: Arc<dyn Clock>,
    /// `peer.authentication.timewindow`: how far a request's timestamp may be from now.
    #[allow(dead_code)]
    time_window: Duration,
}

impl DeliverService {
    pub fn new(channels: Arc<Channels>, clock: Arc<dyn Clock>, time_window: Duration) -> DeliverService {
        DeliverService { channels, clock, time_window }
    }
}

#[tonic::async_trait]
impl Deliver for DeliverService {
    type DeliverStream = BoxStream<proto::protos::DeliverResponse>;
    type DeliverFilteredStream = BoxStream<proto::protos::DeliverResponse>;
    type DeliverWithPrivateDataStream = BoxStream<proto::protos::DeliverResponse>;

    async fn deliver(&self, _request: Request<Streaming<proto::common::Envelope>>) -> Result<Response<Self::DeliverStream>, Status> {
        Err(Status::unimplemented("the Deliver service arrives with the ledger (issue #7)"))
    }

    async fn deliver_filtered(&self, _request: Request<Streaming<proto::common::Envelope>>) -> Result<Response<Self::DeliverFilteredStream>, Status> {
        Err(Status::unimplemented("filtered blocks are not supported by peer-core yet"))
    }

    async fn deliver_with_private_data(
        &self,
        _request: Request<Streaming<proto::common::Envelope>>,
    ) -> Result<Response<Self::DeliverWithPrivateDataStream>, Status> {
        Err(Status::unimplemented("private data is not supported by peer-core"))
    }
}
