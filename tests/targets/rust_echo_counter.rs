//! A Rust std program (built static by the tests with rustc, no cargo): a
//! TCP echo server on 127.0.0.1:<port>, one thread per connection, that
//! prefixes each line with a count shared by all threads (Arc<AtomicU64>),
//! and a ticker thread that bumps another count every 10 ms. Its first
//! line says "ready <pid>".

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

fn main() {
    let port: u16 = std::env::args().nth(1).expect("port").parse().expect("port number");
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let count = Arc::new(AtomicU64::new(0));
    let ticks = Arc::new(AtomicU64::new(0));
    {
        let ticks = ticks.clone();
        thread::spawn(move || loop {
            ticks.fetch_add(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(10));
        });
    }
    println!("ready {}", std::process::id());
    for stream in listener.incoming() {
        let mut stream = stream.expect("accept");
        let count = count.clone();
        let ticks = ticks.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let t = ticks.load(Ordering::SeqCst);
                let reply = format!("{} {} {}", n, t > 0, line);
                if stream.write_all(reply.as_bytes()).is_err() {
                    break;
                }
                line.clear();
            }
        });
    }
}
