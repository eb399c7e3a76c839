//! Hostile input against real processes: slow clients, oversized bodies, strange method
//! names, and secrets that must never show up where they should not.

mod common;

use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Reads until the server closes the connection or `limit` passes; returns what came
/// back and when the connection ended (or `None` if it stayed open).
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => {
                return (
                    String::from_utf8_lossy(&out).into_owned(),
                    Some(started.elapsed()),
                );
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                return (
                    String::from_utf8_lossy(&out).into_owned(),
                    Some(started.elapsed()),
                );
            }
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), None)
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_are_cut_off_and_slow_bodies_time_out() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    let port = plant.central_port;
    let headers = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"POST /api/Run HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        // One header byte every 500 ms: never finishes within the 10 s header timeout.
        let started = Instant::now();
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            if started.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        started.elapsed()
    });
    let body = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head = format!(
            "POST /api/Spin HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        );
        s.write_all(head.as_bytes()).unwrap();
        read_until_closed(&mut s, Duration::from_secs(10))
    });
    let (answer, _) = body.await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a trickled body times out with the method's 1 s timeout: {answer}"
    );
    let took = headers.await.unwrap();
    assert!(
        took < Duration::from_secs(16),
        "trickled headers were cut off: {took:?}"
    );
    assert_eq!(
        plant
            .call("Run", json!({ "instance": "T-1", "script": "Echo" }))
            .await
            .0,
        200,
        "the node is fine"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversize_body_is_refused_without_being_read() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    let port = plant.central_port;
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head = format!("POST /api/Run HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        // Not a byte of the 100 MB is sent: the answer comes anyway.
        let started = Instant::now();
        let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5));
        (answer, started.elapsed())
    })
    .await
    .unwrap();
    assert!(answer.0.starts_with("HTTP/1.1 413"), "{}", answer.0);
    assert!(answer.0.contains("PAYLOAD_TOO_LARGE"));
}

#[tokio::test(flavor = "multi_thread")]
async fn strange_method_names_get_404_or_400() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    let long = "a".repeat(10_000);
    for name in [
        "..%2F..%2Fetc%2Fpasswd",
        "../Run",
        "%00",
        "Run%00",
        "%E5%90%8D%E5%89%8D",
        "Run%20",
        &long,
        "Run/../Run",
    ] {
        let r = http()
            .post(format!(
                "http://127.0.0.1:{}/api/{name}",
                plant.central_port
            ))
            .header("X-API-Key", KEY)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(
            status == 404 || status == 400,
            "{}: {status}",
            &name[..name.len().min(40)]
        );
    }
    let nested = format!(
        "{{\"instance\": {}1{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let r = http()
        .post(format!("http://127.0.0.1:{}/api/Run", plant.central_port))
        .header("X-API-Key", KEY)
        .header("content-type", "application/json")
        .body(nested)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        400,
        "deep nesting is refused, no stack overflow"
    );
    assert_eq!(
        plant
            .call("Run", json!({ "instance": "T-1", "script": "Echo" }))
            .await
            .0,
        200,
        "the node is fine"
    );
}
