//! A small HTTP/1.1 client over one keep-alive connection (hyper), for import and benchmarks.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    token: String,
}

pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Client {
    pub async fn connect(addr: &str, token: &str) -> std::io::Result<Client> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Client {
            sender,
            host: addr.to_string(),
            token: token.to_string(),
        })
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> std::io::Result<Reply> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(Full::new(body))
            .map_err(std::io::Error::other)?;
        self.sender.ready().await.map_err(std::io::Error::other)?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(std::io::Error::other)?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        Ok(Reply { status, body })
    }

    pub async fn get(&mut self, path: &str) -> std::io::Result<Reply> {
        self.send(Method::GET, path, "application/json", Bytes::new())
            .await
    }

    pub async fn post_json(&mut self, path: &str, body: Vec<u8>) -> std::io::Result<Reply> {
        self.send(Method::POST, path, "application/json", Bytes::from(body))
            .await
    }
}

/// `http://host:port` or `host:port` to `host:port`.
pub fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Percent-encodes a path segment or query value.
pub fn encode(raw: &str) -> String {
    let mut out = String::new();
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
