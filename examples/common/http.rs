//! Just enough HTTP/1.1 for the browser examples (`reflect`, `play-from-disk`): a page and a
//! JSON POST, one request per connection, bounded in size and time. A real server would use a
//! web framework; the examples keep their dependencies to the library's own.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 256 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

pub struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Response {
    pub fn html(page: &str) -> Self {
        Self {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: page.as_bytes().to_vec(),
        }
    }

    pub fn json(value: serde_json::Result<serde_json::Value>) -> Self {
        match value {
            Ok(value) => Self {
                status: 200,
                content_type: "application/json",
                body: value.to_string().into_bytes(),
            },
            Err(e) => Self::error(500, &e.to_string()),
        }
    }

    pub fn error(status: u16, message: &str) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: serde_json::json!({ "error": message })
                .to_string()
                .into_bytes(),
        }
    }
}

/// Accepts connections on `listener` forever, answering each request with `handle` on a task
/// of its own.
pub async fn serve<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(Request) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response> + Send,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, typically: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _ = respond(stream, handle).await;
        });
    }
}

/// Reads one request from `stream`, answers it with `handle` and closes.
pub async fn respond<F: Future<Output = Response>>(
    mut stream: TcpStream,
    handle: impl FnOnce(Request) -> F,
) -> std::io::Result<()> {
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, read(&mut stream)).await {
        Ok(Ok(Ok(request))) => handle(request).await,
        Ok(Ok(Err(bad))) => Response::error(400, bad),
        Ok(Err(e)) => return Err(e),
        Err(_) => Response::error(408, "request timed out"),
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        response.status,
        if response.status == 200 {
            "OK"
        } else {
            "Error"
        },
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&response.body).await?;
    stream.shutdown().await
}

async fn read(stream: &mut TcpStream) -> std::io::Result<Result<Request, &'static str>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Ok(Err("request head too large"));
        }
        match stream.read(&mut chunk).await? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
        return Ok(Err("request head is not UTF-8"));
    };
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(path)) = (request_line.next(), request_line.next()) else {
        return Ok(Err("malformed request line"));
    };
    let mut length = 0;
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            match value.trim().parse() {
                Ok(n) if n <= MAX_BODY => length = n,
                _ => return Ok(Err("bad or too large Content-Length")),
            }
        }
    }
    let request = Request {
        method: method.to_owned(),
        path: path.split('?').next().unwrap_or_default().to_owned(),
        body: Vec::new(),
    };
    let mut body = buf.split_off(head_end + 4);
    while body.len() < length {
        match stream.read(&mut chunk).await? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    Ok(Ok(Request { body, ..request }))
}
