//! The exchange's state machine on real sockets with small buffers, where the timing that
//! matters can be set up without racing the kernel.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

use super::super::conn::Conn;
use super::super::pool::{Config, Pool};
use super::ResponseFuture;

#[tokio::test]
async fn an_early_answer_with_the_request_unsent_keeps_no_connection() {
    // The backend reads the head, answers 413 at once (keep-alive) and reads nothing more,
    // as servers that refuse an upload do; it would then read the rest of the declared body.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener: TcpListener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
            head.push(byte[0]);
        }
        // Let the client fill the sockets' small buffers first.
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        stream
    });
    // A connection with a small send buffer: the 24 KiB body does not fit in both buffers,
    // and the part left over is smaller than one write chunk (16 KiB), so the exchange takes
    // the body's end while the rest waits for room that never comes.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    let conn = Conn::new(socket.connect(addr).await.unwrap());
    let config = Config {
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        max_idle: 8,
    };
    let pool = Arc::new(Pool::new(
        Arc::new(config),
        addr.to_string().parse().unwrap(),
    ));
    pool.checkin(conn);
    let body = Full::new(Bytes::from(vec![b'x'; 24 * 1024]));
    let req = Request::post("/upload").body(body).unwrap();
    let res = ResponseFuture::new(Arc::clone(&pool), req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    res.into_body().collect().await.unwrap();
    // Kept, the connection would carry the next request into the body the backend waits for.
    assert!(pool.checkout().is_none(), "a half-sent connection was kept");
    drop(backend.await.unwrap());
}
