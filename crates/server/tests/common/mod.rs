//! Test helpers: a real server on 127.0.0.1:0 and a raw protocol client.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use chatsync_protocol::{
    encode, ClientFrame, ConversationId, DeviceId, ErrorCode, ServerFrame, UserId,
    PROTOCOL_VERSION, WS_PATH,
};
use chatsync_server::{serve, ServerConfig, ServerError};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TIMEOUT: Duration = Duration::from_secs(5);
pub const PASSWORD: &str = "correct horse";

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

pub async fn start(dir: &Path) -> Server {
    start_with(dir, |_| {}).await
}

pub async fn start_with(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = ServerConfig {
        data_dir: dir.to_path_buf(),
        ..ServerConfig::default()
    };
    tweak(&mut config);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, config, async move {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}

impl Server {
    /// Requests shutdown and waits for serve() to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("serve() did not return after shutdown")
            .unwrap()
            .unwrap();
    }
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_req: u64,
    pub user: UserId,
    pub device: DeviceId,
    pub token: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let url = format!("ws://{addr}{WS_PATH}");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Client {
            ws,
            next_req: 1,
            user: UserId(uuid::Uuid::nil()),
            device: DeviceId(uuid::Uuid::nil()),
            token: String::new(),
        }
    }

    pub fn req(&mut self) -> u64 {
        self.next_req += 1;
        self.next_req
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        self.send_text(&encode(frame)).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) {
        self.ws.send(Message::binary(data)).await.unwrap();
    }

    /// The next frame; panics on timeout or close.
    pub async fn recv(&mut self) -> ServerFrame {
        loop {
            let msg = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("read error");
            match msg {
                Message::Text(t) => return chatsync_protocol::decode_server(&t).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// Waits for the server to close the connection; returns the close code
    /// if a close frame came. Frames before it are returned too.
    pub async fn recv_until_closed(&mut self) -> (Vec<ServerFrame>, Option<u16>) {
        let mut frames = Vec::new();
        loop {
            let next = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("the server did not close the connection");
            match next {
                Some(Ok(Message::Text(t))) => {
                    frames.push(chatsync_protocol::decode_server(&t).unwrap())
                }
                Some(Ok(Message::Close(c))) => return (frames, c.map(|c| u16::from(c.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return (frames, None),
            }
        }
    }

    /// Asserts nothing arrives for a short while.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(Some(Ok(msg))) = tokio::time::timeout(wait, self.ws.next()).await {
            panic!("unexpected message {msg:?}");
        }
    }

    /// Pings and waits for the pong: everything before it was processed.
    pub async fn roundtrip(&mut self) {
        let nonce = self.req();
        self.send(&ClientFrame::Ping { nonce }).await;
        match self.recv().await {
            ServerFrame::Pong { nonce: n } => assert_eq!(n, nonce),
            other => panic!("expected pong, got {other:?}"),
        }
    }

    pub async fn register(&mut self, name: &str) -> UserId {
        let req = self.req();
        self.send(&ClientFrame::Register {
            req,
            username: name.into(),
            password: PASSWORD.into(),
        })
        .await;
        match self.recv().await {
            ServerFrame::Registered { req: r, user } if r == req => user,
            other => panic!("expected registered, got {other:?}"),
        }
    }

    pub async fn login(&mut self, name: &str) -> String {
        let req = self.req();
        self.send(&ClientFrame::Login {
            req,
            username: name.into(),
            password: PASSWORD.into(),
            device_name: "test".into(),
        })
        .await;
        match self.recv().await {
            ServerFrame::LoggedIn {
                req: r,
                user,
                device,
                token,
            } if r == req => {
                self.user = user;
                self.device = device;
                self.token = token.clone();
                token
            }
            other => panic!("expected logged_in, got {other:?}"),
        }
    }

    pub async fn hello(&mut self, token: &str) -> ServerFrame {
        self.send(&ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            token: token.into(),
        })
        .await;
        self.recv().await
    }

    pub async fn create(&mut self, title: &str, members: &[&str]) -> ConversationId {
        let req = self.req();
        self.send(&ClientFrame::CreateConversation {
            req,
            title: title.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
        })
        .await;
        match self.recv().await {
            ServerFrame::Conversation {
                req: Some(r),
                conversation,
            } if r == req => conversation.id,
            other => panic!("expected conversation, got {other:?}"),
        }
    }
}

/// Registers `name`, logs in and authenticates a new connection.
pub async fn account(addr: SocketAddr, name: &str) -> Client {
    let mut c = Client::connect(addr).await;
    c.register(name).await;
    let token = c.login(name).await;
    match c.hello(&token).await {
        ServerFrame::Welcome { user, .. } => assert_eq!(user, c.user),
        other => panic!("expected welcome, got {other:?}"),
    }
    c
}

/// A new authenticated connection (another device) of an existing account.
pub async fn device(addr: SocketAddr, name: &str) -> Client {
    let mut c = Client::connect(addr).await;
    let token = c.login(name).await;
    match c.hello(&token).await {
        ServerFrame::Welcome { .. } => {}
        other => panic!("expected welcome, got {other:?}"),
    }
    c
}

pub fn error_code(frame: &ServerFrame) -> Option<ErrorCode> {
    match frame {
        ServerFrame::Error { refusal, .. } | ServerFrame::Refused { refusal, .. } => {
            Some(refusal.code)
        }
        _ => None,
    }
}
