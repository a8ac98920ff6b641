//! The HTTP listener: poem's TCP acceptor with Nagle's algorithm off.
//!
//! poem leaves accepted sockets as the kernel made them, with Nagle on. A
//! WebSocket sends many small frames (acks, controls, deltas); with Nagle a
//! frame written while the previous one is still unacknowledged waits for
//! that acknowledgement, which the client's delayed ACK may hold back for
//! 40 ms. Every frame here is already a whole message, so each goes out at
//! once.

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::net::TcpStream;
use tracing::debug;

pub struct NoDelayAcceptor(TcpAcceptor);

impl NoDelayAcceptor {
    pub fn new(inner: TcpAcceptor) -> Self {
        Self(inner)
    }
}

impl Acceptor for NoDelayAcceptor {
    type Io = TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> std::io::Result<(TcpStream, LocalAddr, RemoteAddr, Scheme)> {
        let (stream, local, remote, scheme) = self.0.accept().await?;
        // A socket that refuses the option still works, only slower.
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "could not turn Nagle off on an accepted socket");
        }
        Ok((stream, local, remote, scheme))
    }
}

#[cfg(test)]
mod tests {
    use poem::listener::Listener;

    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_nagle_off() {
        let inner = poem::listener::TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind");
        let mut acceptor = NoDelayAcceptor::new(inner);
        let addr = *acceptor.local_addr()[0]
            .as_socket_addr()
            .expect("a socket address");
        let client = tokio::spawn(TcpStream::connect(addr));
        let (stream, _, _, _) = acceptor.accept().await.expect("accept");
        assert!(stream.nodelay().expect("read the option"));
        drop(client.await);
    }
}
