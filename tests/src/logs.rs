//! Captures every log line of the test process (all levels) so tests can scan them.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

static LINES: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

fn buffer() -> &'static Mutex<Vec<u8>> {
    LINES.get_or_init(|| Mutex::new(Vec::new()))
}

#[derive(Clone, Copy)]
struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = buffer().lock() {
            b.extend_from_slice(buf);
        }
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Installs the capturing JSON subscriber at `debug` (once per process) and the
/// process's metrics recorder.
pub fn install() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter(EnvFilter::new(
            "debug,h2=info,hyper=info,reqwest=info,lapin=info,amq_protocol=info",
        ))
        .with_writer(Capture)
        .try_init();
    shared_kernel::http::init_metrics();
}

/// Everything logged so far.
pub fn captured() -> String {
    buffer()
        .lock()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
