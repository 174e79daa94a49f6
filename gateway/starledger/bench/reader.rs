//! The balance reads' own HTTP/1.1 client: one keep-alive connection per read task, driven
//! with hyper's connection API, without reqwest's pool.
//!
//! Through reqwest the load generator spent about as much CPU per read as the server it
//! measured, on the same two cores (docs/benchmarks.md, cached reads), so the read rows
//! measured the generator. This client does only what a read needs: one request at a time
//! on its connection, reconnecting after an error. Webhooks still go through reqwest.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where a plain-HTTP URL points: the `host:port` to connect to and the path to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) authority: String,
    pub(crate) path: String,
}

impl Target {
    /// `None` unless `url` is `http://` (TLS is left to reqwest).
    pub(crate) fn parse(url: &str) -> Option<Self> {
        let parsed = reqwest::Url::parse(url).ok()?;
        if parsed.scheme() != "http" {
            return None;
        }
        let host = parsed.host_str()?;
        let port = parsed.port_or_known_default()?;
        let path = match parsed.query() {
            Some(query) => format!("{}?{query}", parsed.path()),
            None => parsed.path().to_owned(),
        };
        Some(Self {
            authority: format!("{host}:{port}"),
            path,
        })
    }
}

/// One connection of a read task.
#[derive(Default)]
pub(crate) struct Reader {
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Reader {
    /// `GET target` with `authorization`; the status and the whole body. After an error the
    /// connection is dropped and the next call opens a new one.
    pub(crate) async fn get(
        &mut self,
        target: &Target,
        authorization: &str,
    ) -> anyhow::Result<(u16, Bytes)> {
        let answer = self.try_get(target, authorization).await;
        if answer.is_err() {
            self.sender = None;
        }
        answer
    }

    async fn try_get(
        &mut self,
        target: &Target,
        authorization: &str,
    ) -> anyhow::Result<(u16, Bytes)> {
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.sender.insert(connect(&target.authority).await?),
        };
        sender.ready().await?;
        let request = Request::get(target.path.as_str())
            .header(HOST, target.authority.as_str())
            .header(AUTHORIZATION, authorization)
            .body(Empty::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

async fn connect(authority: &str) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    // The connection's own task: it ends when the sender is dropped or the peer closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_http_url_is_split_into_where_and_what() {
        assert_eq!(
            Target::parse("http://127.0.0.1:8080/v1/users/7/balance"),
            Some(Target {
                authority: "127.0.0.1:8080".into(),
                path: "/v1/users/7/balance".into()
            })
        );
        assert_eq!(
            Target::parse("http://localhost/a?b=1").map(|t| (t.authority, t.path)),
            Some(("localhost:80".into(), "/a?b=1".into()))
        );
        assert_eq!(Target::parse("https://example.com/v1"), None);
        assert_eq!(Target::parse("not a url"), None);
    }
}
