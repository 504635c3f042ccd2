//! An OTLP/HTTP receiver for the spans that contexts running as child processes
//! export (`OTEL_EXPORTER_OTLP_ENDPOINT`), so a test sees them exactly as they leave.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use std::sync::{Arc, Mutex};

/// One exported span, as text: what a collector would store.
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    /// `service.name` of the process that exported it.
    pub service: String,
    pub name: String,
    /// Attributes as (key, value rendered as text).
    pub attributes: Vec<(String, String)>,
    /// Events (log lines inside the span) as (name, attributes).
    pub events: Vec<(String, Vec<(String, String)>)>,
    pub status: String,
}

impl ExportedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Everything the span carries as text, one item a line.
    pub fn text(&self) -> String {
        let mut out = vec![self.service.clone(), self.name.clone(), self.status.clone()];
        for (k, v) in &self.attributes {
            out.push(format!("{k}={v}"));
        }
        for (name, attrs) in &self.events {
            out.push(name.clone());
            for (k, v) in attrs {
                out.push(format!("{k}={v}"));
            }
        }
        out.join("\n")
    }
}

/// Receives `POST /v1/traces` (protobuf) on a free local port.
pub struct OtlpSink {
    /// The base URL to give as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub url: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    handle: actix_web::dev::ServerHandle,
}

impl OtlpSink {
    pub async fn start() -> Self {
        use actix_web::{web, App, HttpResponse, HttpServer};
        let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let sink = web::Data::new(bodies.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(sink.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route(
                    "/v1/traces",
                    web::post().to(
                        |body: web::Bytes, sink: web::Data<Arc<Mutex<Vec<Vec<u8>>>>>| async move {
                            sink.lock().unwrap().push(body.to_vec());
                            HttpResponse::Ok()
                                .content_type("application/x-protobuf")
                                .finish()
                        },
                    ),
                )
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("a port for the OTLP receiver");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}"),
            bodies,
            handle,
        }
    }

    /// Every request body received so far, as sent.
    pub fn raw(&self) -> Vec<Vec<u8>> {
        self.bodies.lock().unwrap().clone()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        use prost::Message;
        let mut out = Vec::new();
        for body in self.raw() {
            let request =
                ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP trace export");
            for rs in request.resource_spans {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| r.attributes.iter())
                    .find(|kv| kv.key == "service.name")
                    .map(|kv| render(kv.value.as_ref()))
                    .unwrap_or_default();
                for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                    out.push(ExportedSpan {
                        service: service.clone(),
                        name: span.name,
                        attributes: pairs(&span.attributes),
                        events: span
                            .events
                            .iter()
                            .map(|e| (e.name.clone(), pairs(&e.attributes)))
                            .collect(),
                        status: span.status.map(|s| s.message).unwrap_or_default(),
                    });
                }
            }
        }
        out
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn pairs(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
        .collect()
}

fn render(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .map(|v| render(Some(v)))
            .collect::<Vec<_>>()
            .join(","),
        Some(any_value::Value::KvlistValue(l)) => pairs(&l.values)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        // An index into a string table (profiles), not text.
        Some(any_value::Value::StringValueStrindex(i)) => format!("strindex:{i}"),
    }
}
