//! A minimal Redis client (RESP2 over one TCP connection, reconnecting on failure): the
//! few commands the gateway fleet state needs, each with a timeout. Small on purpose — a
//! full client crate would cost more build time than these commands are worth.

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL is not `redis://[:PASSWORD@]HOST:PORT[/DB]`.
    #[error("bad Redis URL {0:?}: expected redis://[:PASSWORD@]HOST:PORT[/DB]")]
    Url(String),
    /// Connecting, writing or reading failed or timed out.
    #[error("Redis at {address} is unreachable: {detail}")]
    Io {
        /// host:port.
        address: String,
        /// What failed.
        detail: String,
    },
    /// Redis answered an error.
    #[error("Redis answered: {0}")]
    Server(String),
    /// The answer was not what the command returns.
    #[error("unexpected Redis answer: {0:?}")]
    Unexpected(Reply),
}

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `:1`.
    Int(i64),
    /// `$…` (None: the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*…`.
    Array(Vec<Reply>),
}

/// A connection to one Redis server.
pub struct Redis {
    address: String,
    password: Option<String>,
    db: Option<u32>,
    timeout: Duration,
    connection: Mutex<Option<BufReader<TcpStream>>>,
}

impl Redis {
    /// A client for `url`; connects on first use.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RedisError> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| RedisError::Url(url.to_owned()))?;
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (Some(credentials), rest),
            None => (None, rest),
        };
        let (address, db) = match rest.split_once('/') {
            Some((address, "")) => (address, None),
            Some((address, db)) => (
                address,
                Some(db.parse().map_err(|_| RedisError::Url(url.to_owned()))?),
            ),
            None => (rest, None),
        };
        if address.is_empty() {
            return Err(RedisError::Url(url.to_owned()));
        }
        let address = if address.contains(':') {
            address.to_owned()
        } else {
            format!("{address}:6379")
        };
        let password = credentials
            .map(|c| c.split_once(':').map_or(c, |(_, p)| p).to_owned())
            .filter(|p| !p.is_empty());
        Ok(Self {
            address,
            password,
            db,
            timeout,
            connection: Mutex::new(None),
        })
    }

    /// `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn io(&self, detail: impl std::fmt::Display) -> RedisError {
        RedisError::Io {
            address: self.address.clone(),
            detail: detail.to_string(),
        }
    }

    /// Runs one command; a failed connection is dropped and reopened on the next call.
    pub async fn command(&self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let mut guard = self.connection.lock().await;
        if guard.is_none() {
            let stream = tokio::time::timeout(self.timeout, TcpStream::connect(&self.address))
                .await
                .map_err(|_| self.io("connect timed out"))?
                .map_err(|e| self.io(e))?;
            stream.set_nodelay(true).map_err(|e| self.io(e))?;
            let mut connection = BufReader::new(stream);
            if let Some(password) = &self.password {
                round_trip(
                    &mut connection,
                    &[b"AUTH", password.as_bytes()],
                    self.timeout,
                )
                .await
                .map_err(|e| self.io(e))??;
            }
            if let Some(db) = self.db {
                round_trip(
                    &mut connection,
                    &[b"SELECT", db.to_string().as_bytes()],
                    self.timeout,
                )
                .await
                .map_err(|e| self.io(e))??;
            }
            *guard = Some(connection);
        }
        let Some(connection) = guard.as_mut() else {
            return Err(self.io("no connection"));
        };
        match round_trip(connection, args, self.timeout).await {
            Ok(reply) => reply,
            Err(error) => {
                *guard = None;
                Err(self.io(error))
            }
        }
    }
}

/// Writes one command and reads its reply. The outer error is the connection's (it must
/// be dropped); the inner one is Redis's answer.
async fn round_trip(
    connection: &mut BufReader<TcpStream>,
    args: &[&[u8]],
    timeout: Duration,
) -> Result<Result<Reply, RedisError>, String> {
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    let exchange = async {
        connection.get_mut().write_all(&request).await?;
        read_reply(connection).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err("timed out".to_owned()),
        Ok(Err(error)) => Err(error.to_string()),
        Ok(Ok(reply)) => Ok(reply),
    }
}

fn invalid(detail: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, detail.to_owned())
}

/// A reply being read: the connection's error outside, Redis's answer inside.
type ReadingReply<'a> =
    std::pin::Pin<Box<dyn Future<Output = std::io::Result<Result<Reply, RedisError>>> + Send + 'a>>;

/// Reads one reply (recursively for arrays).
fn read_reply(connection: &mut BufReader<TcpStream>) -> ReadingReply<'_> {
    Box::pin(async move {
        let mut line = String::new();
        if connection.read_line(&mut line).await? == 0 {
            return Err(invalid("connection closed"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (kind, rest) = line.split_at(line.len().min(1));
        let number = || rest.parse::<i64>().map_err(|_| invalid("bad length"));
        Ok(Ok(match kind {
            "+" => Reply::Simple(rest.to_owned()),
            "-" => return Ok(Err(RedisError::Server(rest.to_owned()))),
            ":" => Reply::Int(number()?),
            "$" => match number()? {
                -1 => Reply::Bulk(None),
                n => {
                    let mut data = vec![0; n as usize + 2];
                    connection.read_exact(&mut data).await?;
                    data.truncate(n as usize);
                    Reply::Bulk(Some(data))
                }
            },
            "*" => match number()? {
                -1 => Reply::Array(Vec::new()),
                n => {
                    let mut items = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        match read_reply(connection).await? {
                            Ok(item) => items.push(item),
                            Err(error) => return Ok(Err(error)),
                        }
                    }
                    Reply::Array(items)
                }
            },
            _ => return Err(invalid("unknown reply type")),
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_address_password_and_database() {
        let redis = Redis::new("redis://:secret@cache:6380/2", Duration::from_secs(1)).unwrap();
        assert_eq!(
            (redis.address(), redis.password.as_deref(), redis.db),
            ("cache:6380", Some("secret"), Some(2))
        );
        let plain = Redis::new("redis://127.0.0.1", Duration::from_secs(1)).unwrap();
        assert_eq!((plain.address(), plain.db), ("127.0.0.1:6379", None));
        assert!(Redis::new("http://x", Duration::from_secs(1)).is_err());
    }
}
