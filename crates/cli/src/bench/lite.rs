//! A protocol-level client for the suites that need many connections or
//! pure server figures: raw tokio-tungstenite, JSON frames from the
//! protocol crate, no client storage. It speaks exactly PROTOCOL.md.

use anyhow::{bail, Context};
use chatsync_protocol::{ClientFrame, ServerFrame, PROTOCOL_VERSION, WS_PATH};
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Bytes of frames gathered before a write to the socket (see [`connect_path`]).
const WRITE_BUFFER: usize = 64 * 1024;

/// A WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// Opens a WebSocket to `addr` (`host:port` of the server, `path` on it),
/// from `source` when given (a loopback address such as 127.0.0.7, so that
/// many connections do not exhaust one address's ephemeral ports).
pub async fn connect_path(addr: &str, path: &str, source: Option<IpAddr>) -> anyhow::Result<Ws> {
    let target: SocketAddr = addr
        .parse()
        .with_context(|| format!("server address {addr} is not ip:port"))?;
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        // Ports of connections closed by an earlier run wait in TIME_WAIT;
        // let them be reused.
        socket.set_reuseaddr(true)?;
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("cannot bind to {ip}"))?;
    }
    let stream = socket
        .connect(target)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}{path}");
    // A small read buffer: tungstenite preallocates it (128 KiB by
    // default), which would make the load generator's memory, not the
    // server's, the limit of the connections suite; it grows when a frame
    // needs it. Writes are buffered up to WRITE_BUFFER and go out at each
    // flush (`SinkExt::send` flushes; a burst of `feed`s ends with one): a
    // buffer of 0 would cost one `sendto` per frame, which was half of the
    // generator's CPU at max rate. The write buffer is allocated only when
    // something is written.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(WRITE_BUFFER);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .context("WebSocket handshake")?;
    Ok(ws)
}

/// Opens a chatsync connection and authenticates it with `token`.
pub async fn connect(addr: &str, token: &str, source: Option<IpAddr>) -> anyhow::Result<Ws> {
    let mut ws = connect_path(addr, WS_PATH, source).await?;
    send(
        &mut ws,
        &ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            token: token.to_string(),
        },
    )
    .await?;
    loop {
        match next(&mut ws).await? {
            Some(ServerFrame::Welcome { .. }) => return Ok(ws),
            Some(ServerFrame::Error { refusal, .. }) => {
                bail!("hello refused: {:?} {}", refusal.code, refusal.message)
            }
            Some(_) => continue,
            None => bail!("the server closed the connection during hello"),
        }
    }
}

/// Sends one frame.
pub async fn send<S>(ws: &mut S, frame: &ClientFrame) -> anyhow::Result<()>
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    ws.send(Message::text(chatsync_protocol::encode(frame)))
        .await
        .context("WebSocket send")?;
    Ok(())
}

/// The next server frame; `None` once the connection closed. WebSocket
/// control frames are skipped.
pub async fn next<S>(ws: &mut S) -> anyhow::Result<Option<ServerFrame>>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(msg) = ws.next().await {
        match msg.context("WebSocket receive")? {
            Message::Text(t) => {
                let frame = chatsync_protocol::decode_server(t.as_str())
                    .with_context(|| format!("undecodable server frame: {}", t.as_str()))?;
                return Ok(Some(frame));
            }
            Message::Close(_) => return Ok(None),
            _ => continue,
        }
    }
    Ok(None)
}

/// The `i`-th loopback source address out of `spread` (127.0.0.2 …),
/// `None` when `spread` is 0.
pub fn source_addr(i: usize, spread: usize) -> Option<IpAddr> {
    if spread == 0 {
        return None;
    }
    let k = (i % spread) as u32 + 2;
    Some(IpAddr::from([
        127,
        (k >> 16) as u8,
        (k >> 8) as u8,
        k as u8,
    ]))
}
