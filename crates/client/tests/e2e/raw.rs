//! A raw WebSocket client speaking the protocol by hand, to send what the
//! client library never would.

use crate::support::{PASSWORD, TIMEOUT};
use chatsync_protocol::{
    encode, ClientFrame, ConversationId, MessageId, ServerFrame, PROTOCOL_VERSION, WS_PATH,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct RawWs {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawWs {
    pub async fn connect(server: &str) -> RawWs {
        let url = format!("ws://{server}{WS_PATH}");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        RawWs { ws }
    }

    /// Connects and authenticates as `name` with a fresh session.
    pub async fn login(server: &str, name: &str) -> RawWs {
        let mut raw = Self::connect(server).await;
        raw.send(&ClientFrame::Login {
            req: 1,
            username: name.into(),
            password: PASSWORD.into(),
            device_name: "raw".into(),
        })
        .await;
        let token = match raw.recv().await {
            ServerFrame::LoggedIn { token, .. } => token,
            other => panic!("expected logged_in, got {other:?}"),
        };
        raw.send(&ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            token,
        })
        .await;
        match raw.recv().await {
            ServerFrame::Welcome { .. } => raw,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        self.send_text(&encode(frame)).await;
    }

    /// A `send` frame, written as JSON by hand so it only carries the
    /// fields every protocol revision knows.
    pub async fn send_message(&mut self, id: MessageId, conversation: ConversationId, body: &str) {
        let frame = serde_json::json!({
            "type": "send",
            "id": id,
            "conversation": conversation,
            "body": body,
        });
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.ws.send(Message::binary(data.to_vec())).await.unwrap();
    }

    /// The next text frame as sent; `None` once the server closed.
    pub async fn recv_text(&mut self) -> Option<String> {
        loop {
            let next = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for a frame from the server");
            match next {
                Some(Ok(Message::Text(t))) => return Some(t.as_str().to_string()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next frame, decoded; fails if the connection ends first.
    pub async fn recv(&mut self) -> ServerFrame {
        let text = self
            .recv_text()
            .await
            .expect("the server closed the connection");
        chatsync_protocol::decode_server(&text)
            .unwrap_or_else(|e| panic!("undecodable frame {text:?}: {e}"))
    }

    /// Reads until the server closes; returns the frames before the close.
    pub async fn until_closed(&mut self) -> Vec<String> {
        let mut frames = Vec::new();
        while let Some(text) = self.recv_text().await {
            frames.push(text);
        }
        frames
    }
}
