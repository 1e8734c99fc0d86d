//! An in-memory Network for tests: listeners registered by port, connections as in-process
//! pipes. Every listener is on one host, `HOST`; dialers appear as 10.0.0.1:40000.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::HostPort;
use crate::env::{BoxFuture, Connection, Listener, Network, StreamConnection};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

pub const HOST: [u8; 4] = [10, 9, 8, 7];

#[derive(Default)]
pub struct MemNetwork {
    listeners: Mutex<BTreeMap<u16, mpsc::UnboundedSender<(DuplexStream, SocketAddr)>>>,
}

struct MemListener {
    local: SocketAddr,
    incoming: mpsc::UnboundedReceiver<(DuplexStream, SocketAddr)>,
}

impl Listener for MemListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(Box<dyn Connection>, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.incoming.recv().await.ok_or_else(|| io::Error::other("network gone"))?;
            Ok((Box::new(StreamConnection { stream, local: self.local, peer }) as Box<dyn Connection>, peer))
        })
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl Network for MemNetwork {
    fn bind(&self, address: &HostPort) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let (send, incoming) = mpsc::unbounded_channel();
        let result = match self.listeners.lock().unwrap().entry(address.port) {
            // A port whose listener was dropped is free again.
            std::collections::btree_map::Entry::Occupied(mut slot) if slot.get().is_closed() => {
                slot.insert(send);
                Ok(Box::new(MemListener { local: SocketAddr::from((HOST, address.port)), incoming }) as Box<dyn Listener>)
            }
            std::collections::btree_map::Entry::Occupied(_) => Err(io::Error::from(io::ErrorKind::AddrInUse)),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(send);
                Ok(Box::new(MemListener { local: SocketAddr::from((HOST, address.port)), incoming }) as Box<dyn Listener>)
            }
        };
        Box::pin(async move { result })
    }

    fn connect(&self, address: &HostPort, _timeout: Duration) -> BoxFuture<'static, io::Result<Box<dyn Connection>>> {
        let target = self.listeners.lock().unwrap().get(&address.port).cloned();
        let port = address.port;
        Box::pin(async move {
            let target = target.ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            let (ours, theirs) = tokio::io::duplex(64 << 10);
            let local = SocketAddr::from(([10, 0, 0, 1], 40000));
            target.send((theirs, local)).map_err(|_| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            Ok(Box::new(StreamConnection { stream: ours, local, peer: SocketAddr::from((HOST, port)) }) as Box<dyn Connection>)
        })
    }

    fn interface_addresses(&self) -> Vec<IpAddr> {
        vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(HOST)]
    }
}

/// `GET path` over HTTP/1.1 to the listener on `port`; returns the whole response.
pub async fn http_get(network: &MemNetwork, port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut connection = network.connect(&HostPort::new("peer", port), Duration::from_secs(1)).await.unwrap();
    connection.write_all(format!("GET {path} HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    connection.read_to_string(&mut response).await.unwrap();
    response
}
