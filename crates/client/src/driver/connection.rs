//! Opening a WebSocket to the server and speaking the handshake.

use crate::error::ClientError;
use chatsync_protocol::{
    decode_server, encode, ClientFrame, Limits, ServerFrame, PROTOCOL_VERSION, WS_PATH,
};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// An open WebSocket to a chatsync server.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a connection attempt (TCP, upgrade and handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The WebSocket URL for a server given as `ws://host:port`, `host:port`,
/// or a full URL ending in the endpoint path.
pub fn endpoint(server: &str) -> String {
    let base = if server.contains("://") {
        server.to_string()
    } else {
        format!("ws://{server}")
    };
    if base.ends_with(WS_PATH) {
        base
    } else {
        format!("{}{}", base.trim_end_matches('/'), WS_PATH)
    }
}

/// Opens a WebSocket to `server`.
pub async fn open(server: &str) -> Result<Ws, ClientError> {
    let url = endpoint(server);
    // Frames are small and latency matters more than packet count: no Nagle.
    let attempt = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true);
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(ClientError::Connect {
            url,
            reason: e.to_string(),
        }),
        Err(_) => Err(ClientError::Connect {
            url,
            reason: "timed out".into(),
        }),
    }
}

/// Sends one frame.
pub async fn send_frame(ws: &mut Ws, frame: &ClientFrame) -> Result<(), ClientError> {
    ws.send(Message::Text(encode(frame).into()))
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

/// Waits for the next protocol frame, skipping WebSocket control messages.
/// `Ok(None)` means the server closed the connection.
pub async fn next_frame(ws: &mut Ws) -> Result<Option<ServerFrame>, ClientError> {
    loop {
        match ws.next().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(ClientError::Protocol(e.to_string())),
            Some(Ok(Message::Text(text))) => {
                return decode_server(text.as_str())
                    .map(Some)
                    .map_err(|e| ClientError::Protocol(e.to_string()));
            }
            Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(_)) => continue,
        }
    }
}

/// Opens a connection, sends one request frame and returns the first answer.
pub async fn request(server: &str, frame: ClientFrame) -> Result<ServerFrame, ClientError> {
    let mut ws = open(server).await?;
    send_frame(&mut ws, &frame).await?;
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, next_frame(&mut ws))
        .await
        .map_err(|_| ClientError::Timeout("waiting for the server's answer".into()))??;
    let _ = ws.close(None).await;
    answer.ok_or_else(|| ClientError::Protocol("the server closed the connection".into()))
}

/// The server's `welcome`.
#[derive(Clone, Debug)]
pub struct Welcome {
    /// Limits in force.
    pub limits: Limits,
}

/// Opens a connection and authenticates it with `token`.
pub async fn connect(server: &str, token: &str) -> Result<(Ws, Welcome), ClientError> {
    let mut ws = open(server).await?;
    send_frame(
        &mut ws,
        &ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            token: token.to_string(),
        },
    )
    .await?;
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, next_frame(&mut ws))
        .await
        .map_err(|_| ClientError::Timeout("waiting for the server's welcome".into()))??;
    match answer {
        Some(ServerFrame::Welcome { limits, .. }) => Ok((ws, Welcome { limits })),
        Some(ServerFrame::Error { refusal, .. }) => Err(ClientError::Refused(refusal)),
        Some(other) => Err(ClientError::Protocol(format!(
            "expected welcome, got {other:?}"
        ))),
        None => Err(ClientError::Protocol(
            "the server closed the connection during the handshake".into(),
        )),
    }
}
