//! OpenTelemetry traces: settings (the standard `OTEL_*` variables over the
//! `[telemetry]` config section), the OTLP pipeline, W3C context extraction
//! and the spans jwtd makes. Metrics are `telemetry`'s; logs are `main`'s.
//!
//! Decisions:
//! - **Off unless an endpoint is set.** With no OTLP endpoint (in the
//!   environment or the config) no pipeline is built and [`enabled`] is
//!   false, so every span helper here returns [`Span::none`] after one
//!   relaxed load: the hot path pays nothing measurable.
//! - **Environment over file.** An `OTEL_*` variable, when set, wins over
//!   its `[telemetry]` twin: the OpenTelemetry Operator and mesh injectors
//!   set those variables on the pod, and the file is the service's default.
//!   Both go through the same parser, and a bad value is a startup error
//!   naming the variable or key (the SDK would silently fall back).
//! - **Export off the request path, bounded.** Spans go to the SDK's batch
//!   processor, which exports from its own thread. In front of it a counter
//!   bounds the spans queued or being exported (`max_queued_spans`); past the
//!   bound a span is dropped and counted in `jwtd_trace_spans_dropped_total`,
//!   so an unreachable collector costs memory up to the bound and never time.
//! - **Parent-based sampling by default** (`parentbased_always_on`): a
//!   caller's sampled flag decides; jwtd's own roots (key fetches) are kept.
//! - **Only jwtd's spans are exported**: they use the target [`TARGET`], and
//!   the OpenTelemetry layer sees that target plus warnings and errors (as
//!   span events), not the spans of the crates below.
//! - **Nothing secret, nothing unbounded from a token**: a rejected token
//!   appears as an event with its status, its algorithm, its kid (cut at 64
//!   bytes), its issuer only when configured (else `untrusted`) and the first
//!   8 bytes of its SHA-256. Baggage is extracted into the context but never
//!   copied into attributes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::observability::telemetry;
use crate::verifier::jose;
use crate::verifier::policy::Trust;

/// The `tracing` target of every span and event meant for OpenTelemetry.
pub const TARGET: &str = "jwtd::otel";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// True once a trace pipeline runs; span helpers do nothing before.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Default `max_queued_spans`: the SDK's default queue.
pub const DEFAULT_MAX_QUEUED_SPANS: usize = 2048;

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (port 4317 by convention); the default.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318 by convention).
    HttpProtobuf,
}

impl Protocol {
    /// Parses the `OTEL_EXPORTER_OTLP_PROTOCOL` spelling.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "http/json" => Err(
                "\"http/json\" is not built into jwtd; use \"grpc\" or \"http/protobuf\"".into(),
            ),
            other => Err(format!("{other:?} is not \"grpc\" or \"http/protobuf\"")),
        }
    }
}

/// Which traces are recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerChoice {
    /// Follow a remote parent's sampled flag when there is one.
    pub parent_based: bool,
    /// Fraction of root traces kept (0 to 1).
    pub ratio: f64,
}

impl Default for SamplerChoice {
    fn default() -> Self {
        Self {
            parent_based: true,
            ratio: 1.0,
        }
    }
}

impl SamplerChoice {
    /// Parses `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (the
    /// ratio, for the `traceidratio` samplers; default 1).
    pub fn parse(name: &str, arg: Option<&str>) -> Result<Self, String> {
        let ratio = || -> Result<f64, String> {
            match arg.map(str::trim) {
                None | Some("") => Ok(1.0),
                Some(text) => text
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        format!("sampler argument {text:?} is not a number from 0 to 1")
                    }),
            }
        };
        let (parent_based, ratio) = match name.trim() {
            "always_on" => (false, 1.0),
            "always_off" => (false, 0.0),
            "traceidratio" => (false, ratio()?),
            "parentbased_always_on" => (true, 1.0),
            "parentbased_always_off" => (true, 0.0),
            "parentbased_traceidratio" => (true, ratio()?),
            other => {
                return Err(format!(
                    "{other:?} is not one of always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
                ));
            }
        };
        Ok(Self {
            parent_based,
            ratio,
        })
    }

    fn sampler(self) -> Sampler {
        let root = if self.ratio >= 1.0 {
            Sampler::AlwaysOn
        } else if self.ratio <= 0.0 {
            Sampler::AlwaysOff
        } else {
            Sampler::TraceIdRatioBased(self.ratio)
        };
        if self.parent_based {
            Sampler::ParentBased(Box::new(root))
        } else {
            root
        }
    }
}

/// The `[telemetry]` config section, validated; every field mirrors a
/// standard variable (see [`TraceSettings::resolve`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TelemetryConfig {
    /// `otlp_endpoint`: OTEL_EXPORTER_OTLP_ENDPOINT.
    pub otlp_endpoint: Option<String>,
    /// `otlp_protocol`: OTEL_EXPORTER_OTLP_PROTOCOL.
    pub otlp_protocol: Option<Protocol>,
    /// `service_name`: OTEL_SERVICE_NAME.
    pub service_name: Option<String>,
    /// `resource_attributes`: OTEL_RESOURCE_ATTRIBUTES.
    pub resource_attributes: BTreeMap<String, String>,
    /// `traces_sampler` and `traces_sampler_arg`: OTEL_TRACES_SAMPLER(_ARG).
    pub sampler: Option<SamplerChoice>,
    /// `max_queued_spans`: spans queued or being exported before new ones
    /// are dropped (OTEL_BSP_MAX_QUEUE_SIZE).
    pub max_queued_spans: Option<usize>,
}

/// What the trace pipeline runs with, after the environment was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The collector: a base URL (gRPC, or HTTP where `/v1/traces` is
    /// appended) or, from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, the full URL.
    pub endpoint: Endpoint,
    /// The transport.
    pub protocol: Protocol,
    /// `service.name`.
    pub service_name: String,
    /// Further resource attributes.
    pub resource_attributes: BTreeMap<String, String>,
    /// The sampler.
    pub sampler: SamplerChoice,
    /// The queue bound.
    pub max_queued_spans: usize,
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A base URL: the OTLP/HTTP exporter appends `/v1/traces`.
    Base(String),
    /// A full traces URL, used as given.
    Traces(String),
}

/// Why tracing could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// An `OTEL_*` variable has a value jwtd cannot use.
    #[error("{variable}: {problem}")]
    Env {
        /// The variable.
        variable: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
    /// The exporter refused its settings.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

impl TraceSettings {
    /// The settings from `file` with the standard variables read by `env`
    /// laid over it; `None` when nothing is to be exported (no endpoint, or
    /// OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none).
    pub fn resolve(
        file: &TelemetryConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TraceError> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let bad =
            |variable: &'static str| move |problem: String| TraceError::Env { variable, problem };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(bad("OTEL_TRACES_EXPORTER")(format!(
                    "{other:?}: jwtd exports traces only by \"otlp\" (or \"none\")"
                )));
            }
        }
        let endpoint = if let Some(url) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Endpoint::Traces(url)
        } else if let Some(url) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Endpoint::Base(url)
        } else if let Some(url) = &file.otlp_endpoint {
            Endpoint::Base(url.clone())
        } else {
            return Ok(None);
        };
        let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(p) => Protocol::parse(&p).map_err(bad("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))?,
            None => match var("OTEL_EXPORTER_OTLP_PROTOCOL") {
                Some(p) => Protocol::parse(&p).map_err(bad("OTEL_EXPORTER_OTLP_PROTOCOL"))?,
                None => file.otlp_protocol.unwrap_or(Protocol::Grpc),
            },
        };
        let mut resource_attributes = file.resource_attributes.clone();
        if let Some(text) = var("OTEL_RESOURCE_ATTRIBUTES") {
            resource_attributes
                .extend(parse_attributes(&text).map_err(bad("OTEL_RESOURCE_ATTRIBUTES"))?);
        }
        let service_name = var("OTEL_SERVICE_NAME")
            .or_else(|| resource_attributes.remove("service.name"))
            .or_else(|| file.service_name.clone())
            .unwrap_or_else(|| "jwtd".to_owned());
        resource_attributes.remove("service.name");
        let sampler = match var("OTEL_TRACES_SAMPLER") {
            Some(name) => SamplerChoice::parse(&name, var("OTEL_TRACES_SAMPLER_ARG").as_deref())
                .map_err(bad("OTEL_TRACES_SAMPLER"))?,
            None => file.sampler.unwrap_or_default(),
        };
        let max_queued_spans = match var("OTEL_BSP_MAX_QUEUE_SIZE") {
            Some(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    bad("OTEL_BSP_MAX_QUEUE_SIZE")(format!("{text:?} is not a positive count"))
                })?,
            None => file.max_queued_spans.unwrap_or(DEFAULT_MAX_QUEUED_SPANS),
        };
        Ok(Some(Self {
            endpoint,
            protocol,
            service_name,
            resource_attributes,
            sampler,
            max_queued_spans,
        }))
    }

    /// The URL the exporter is given.
    fn url(&self) -> String {
        match (&self.endpoint, self.protocol) {
            (Endpoint::Traces(url), _) | (Endpoint::Base(url), Protocol::Grpc) => url.clone(),
            (Endpoint::Base(url), Protocol::HttpProtobuf) => {
                format!("{}/v1/traces", url.trim_end_matches('/'))
            }
        }
    }
}

/// Parses `key=value,key=value` (values percent-decoded), as in
/// OTEL_RESOURCE_ATTRIBUTES.
pub fn parse_attributes(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("{pair:?} has an empty key"));
        }
        out.insert(key.to_owned(), percent_decode(value.trim())?);
    }
    Ok(out)
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("{text:?} has a bad %-escape"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

/// A running trace pipeline. [`Tracing::shutdown`] flushes what is queued.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Builds the exporter and the batch processor. Must run inside a tokio
    /// runtime (the gRPC exporter's channel lives on it).
    pub fn start(settings: &TraceSettings) -> Result<Self, TraceError> {
        use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
        let exporter = match settings.protocol {
            Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.url())
                .build(),
            Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(settings.url())
                .with_headers(Default::default())
                .build(),
        }
        .map_err(|e| TraceError::Exporter(e.to_string()))?;
        let queued = Arc::new(AtomicUsize::new(0));
        let batch = BatchSpanProcessor::builder(Counted {
            inner: exporter,
            queued: Arc::clone(&queued),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                // Never the SDK's bound: ours, in front, drops first and counts.
                .with_max_queue_size(settings.max_queued_spans.saturating_add(1))
                .build(),
        )
        .build();
        let resource = Resource::builder_empty()
            .with_detector(Box::new(
                opentelemetry_sdk::resource::TelemetryResourceDetector,
            ))
            .with_attributes(
                settings
                    .resource_attributes
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .with_service_name(settings.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded {
                inner: batch,
                queued,
                bound: settings.max_queued_spans,
            })
            .with_sampler(settings.sampler.sampler())
            .with_resource(resource)
            .build();
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Self { provider })
    }

    /// The `tracing` layer that records jwtd's spans into this pipeline:
    /// spans and events of [`TARGET`], plus warnings and errors as span
    /// events; nothing else.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + Send + Sync + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        use tracing_subscriber::Layer as _;
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("jwtd"))
            // Only what the spans say: no code locations, thread names,
            // busy/idle clocks or targets, and no OpenTelemetry context
            // switch on every enter (nothing here reads Context::current).
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_target(false)
            .with_context_activation(false)
            .with_filter(ByMetadata(|m| {
                m.target() == TARGET || (m.is_event() && *m.level() <= tracing::Level::WARN)
            }))
    }

    /// Stops new spans and exports what is queued (bounded by the exporter's
    /// timeout).
    pub fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("trace export did not finish at shutdown: {e}");
        }
    }
}

/// Drops spans past `bound` queued or in export, and counts them; the batch
/// processor behind it never reaches its own (silent) bound.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    queued: Arc<AtomicUsize>,
    bound: usize,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.bound {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            telemetry::spans_dropped(1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter, releasing [`Bounded`]'s count once a batch is done.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    queued: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.queued.fetch_sub(n, Ordering::AcqRel);
        telemetry::spans_exported(result.is_ok(), n as u64);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// W3C trace context and baggage.
static PROPAGATOR: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
});

/// Reads propagation fields from gRPC metadata (HTTP/2 headers).
struct Headers<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// The server span of one RPC (`method` is `package.Service/Method`), the
/// child of the caller's span when the metadata carries a `traceparent`.
/// Record the outcome with [`record_code`].
pub fn rpc_span(
    method: &'static str,
    metadata: &tonic::metadata::MetadataMap,
    local: Option<SocketAddr>,
) -> Span {
    if !enabled() {
        return Span::none();
    }
    let (service, name) = method.split_once('/').unwrap_or((method, ""));
    let span = tracing::info_span!(
        target: TARGET,
        "rpc",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = name,
        rpc.grpc.status_code = tracing::field::Empty,
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
    );
    if let Some(addr) = local {
        span.record("server.address", tracing::field::display(addr.ip()));
        span.record("server.port", i64::from(addr.port()));
    }
    let parent = PROPAGATOR.extract(&Headers(metadata));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// The trace id of a W3C `traceparent` in `metadata` (32 lower-case hex
/// digits, not all zero), for the audit trail; `None` without a valid one.
/// Read whether or not traces are exported.
pub fn traceparent_trace_id(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    let value = metadata.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    let hex = trace.len() == 32
        && trace
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (hex && trace.bytes().any(|b| b != b'0')).then(|| trace.to_owned())
}

/// Puts the span's trace and span ids in its fields, so log lines inside
/// it carry them. Only for key fetches, which log; a Verify call logs
/// nothing, and starting its span early to learn the ids would cost every
/// call.
fn record_ids(span: &Span) {
    let cx = span.context();
    let ids = cx.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}

/// Records how an RPC ended on its server span. Per the RPC conventions a
/// server marks only the codes that mean a server-side fault as errors.
pub fn record_code(span: &Span, code: tonic::Code) {
    if span.is_none() {
        return;
    }
    span.record("rpc.grpc.status_code", code as i64);
    use tonic::Code::*;
    if matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    ) {
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of one batch's verification, with its size; the engine adds
/// `memo.hits` and `memo.misses`, the adapter a count per status.
pub fn batch_span(size: usize) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "batch",
        otel.name = "jwtd.batch",
        batch.size = size as i64,
        memo.hits = tracing::field::Empty,
        memo.misses = tracing::field::Empty,
        // One field per wire Status (declared: recording a declared field is
        // the cheap path), so a trace shows the batch's outcome at a glance.
        jwtd.status.STATUS_VALID = tracing::field::Empty,
        jwtd.status.STATUS_MALFORMED = tracing::field::Empty,
        jwtd.status.STATUS_TOKEN_TOO_LARGE = tracing::field::Empty,
        jwtd.status.STATUS_UNSUPPORTED_ALGORITHM = tracing::field::Empty,
        jwtd.status.STATUS_ISSUER_NOT_TRUSTED = tracing::field::Empty,
        jwtd.status.STATUS_UNKNOWN_KEY = tracing::field::Empty,
        jwtd.status.STATUS_KEYS_UNAVAILABLE = tracing::field::Empty,
        jwtd.status.STATUS_BAD_SIGNATURE = tracing::field::Empty,
        jwtd.status.STATUS_EXPIRED = tracing::field::Empty,
        jwtd.status.STATUS_NOT_YET_VALID = tracing::field::Empty,
        jwtd.status.STATUS_AUDIENCE_MISMATCH = tracing::field::Empty,
        jwtd.status.STATUS_MISSING_CLAIM = tracing::field::Empty,
        jwtd.status.STATUS_REVOKED = tracing::field::Empty,
        jwtd.status.STATUS_TYPE_NOT_ALLOWED = tracing::field::Empty,
        jwtd.status.STATUS_INSUFFICIENT_SCOPE = tracing::field::Empty,
        jwtd.status.STATUS_CLIENT_NOT_ALLOWED = tracing::field::Empty,
    )
}

/// Records `jwtd.status.<STATUS> = n` for each status in `counts`, where
/// STATUS is the wire name (`STATUS_VALID`, as in the metrics).
pub fn record_statuses<'a>(span: &Span, counts: impl IntoIterator<Item = (&'a str, u64)>) {
    if span.is_none() {
        return;
    }
    for (status, n) in counts {
        let field = STATUS_FIELDS
            .iter()
            .find(|f| f.strip_prefix("jwtd.status.") == Some(status));
        if let Some(field) = field {
            span.record(*field, n as i64);
        }
    }
}

/// The batch span's status fields.
const STATUS_FIELDS: [&str; 16] = [
    "jwtd.status.STATUS_VALID",
    "jwtd.status.STATUS_MALFORMED",
    "jwtd.status.STATUS_TOKEN_TOO_LARGE",
    "jwtd.status.STATUS_UNSUPPORTED_ALGORITHM",
    "jwtd.status.STATUS_ISSUER_NOT_TRUSTED",
    "jwtd.status.STATUS_UNKNOWN_KEY",
    "jwtd.status.STATUS_KEYS_UNAVAILABLE",
    "jwtd.status.STATUS_BAD_SIGNATURE",
    "jwtd.status.STATUS_EXPIRED",
    "jwtd.status.STATUS_NOT_YET_VALID",
    "jwtd.status.STATUS_AUDIENCE_MISMATCH",
    "jwtd.status.STATUS_MISSING_CLAIM",
    "jwtd.status.STATUS_REVOKED",
    "jwtd.status.STATUS_TYPE_NOT_ALLOWED",
    "jwtd.status.STATUS_INSUFFICIENT_SCOPE",
    "jwtd.status.STATUS_CLIENT_NOT_ALLOWED",
];

/// The span over the signature checks of a batch's memo misses, done on
/// the CPU pool.
/// Records `jwtd.tokens`, the distinct tokens checked.
pub fn verify_span() -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "verify",
        otel.name = "jwtd.verify_signatures",
        jwtd.tokens = tracing::field::Empty,
    )
}

/// The span over waiting for unknown-kid refreshes.
pub fn kid_miss_span(issuers: usize) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "kid_miss",
        otel.name = "jwtd.kid_miss_refresh",
        jwtd.issuers = issuers as i64,
    )
}

/// The context of the current span, to link a fetch it caused.
pub fn current_link() -> Option<SpanContext> {
    if !enabled() {
        return None;
    }
    let cx = Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// The span of one key fetch: a root of its own (fetches outlive the
/// requests that cause them), linked to the request behind a kid miss.
/// Record `jwtd.fetch.result` and `jwtd.keys_loaded` when it ends.
pub fn fetch_span(
    issuer: &str,
    host: &str,
    trigger: &'static str,
    link: Option<SpanContext>,
) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        parent: None,
        "fetch",
        otel.name = "jwtd.jwks_fetch",
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        jwtd.issuer = issuer,
        server.address = host,
        jwtd.trigger = trigger,
        jwtd.fetch.result = tracing::field::Empty,
        jwtd.keys_loaded = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if let Some(link) = link {
        span.add_link(link);
    }
    record_ids(&span);
    span
}

/// What a span event may say about a rejected token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    /// The header's algorithm name, or `unknown`.
    pub alg: &'static str,
    /// The header's kid, cut at [`MAX_KID_BYTES`].
    pub kid: Option<String>,
    /// The token's issuer when it is configured, else `untrusted`.
    pub issuer: Cow<'static, str>,
    /// Hex of the first 8 bytes of the token's SHA-256.
    pub digest: String,
}

/// Longest kid put in an event.
pub const MAX_KID_BYTES: usize = 64;

/// Emits one span event per rejected token in the current span.
pub fn reject_event(status: &str, facts: &TokenFacts) {
    tracing::event!(
        target: TARGET,
        tracing::Level::INFO,
        jwtd.status = status,
        jwtd.issuer = &*facts.issuer,
        jwtd.kid = facts.kid.as_deref().unwrap_or(""),
        jwtd.alg = facts.alg,
        jwtd.token.sha256_prefix = facts.digest.as_str(),
        // The message is the span event's name.
        "jwtd.token.rejected"
    );
}

/// True when `span` is recorded and exported (sampled), so per-token work
/// for its events is worth doing.
pub fn is_sampled(span: &Span) -> bool {
    !span.is_none() && span.context().span().span_context().is_sampled()
}

/// The facts of `token` for a rejection event: nothing secret, nothing
/// unbounded, and an issuer only when `trust` configures it.
pub fn token_facts(token: &str, trust: &Trust) -> TokenFacts {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let digest = super::token_fingerprint(token);
    let mut signature = jose::SignatureBuf::new();
    let parsed = (token.len() <= trust.max_token_bytes())
        .then(|| jose::parse_compact(token, &mut signature).ok())
        .flatten();
    let Some(compact) = parsed else {
        return TokenFacts {
            alg: "unknown",
            kid: None,
            issuer: Cow::Borrowed("untrusted"),
            digest,
        };
    };
    let alg = match compact.header.alg {
        jose::AlgName::Known(alg) => alg.name(),
        jose::AlgName::None => "none",
        jose::AlgName::Unknown => "unknown",
    };
    let kid = compact.header.kid.as_deref().map(|kid| {
        let mut end = kid.len().min(MAX_KID_BYTES);
        while !kid.is_char_boundary(end) {
            end -= 1;
        }
        kid[..end].to_owned()
    });
    let issuer = serde_json::from_slice::<Iss>(&compact.payload)
        .ok()
        .and_then(|p| p.iss)
        .filter(|iss| trust.issuer(iss).is_some())
        .map_or(Cow::Borrowed("untrusted"), Cow::Owned);
    TokenFacts {
        alg,
        kid,
        issuer,
        digest,
    }
}

/// A per-layer filter decided by a callsite's metadata alone, so tracing
/// asks it once per callsite and caches the answer. A `filter_fn` is asked
/// again at every span and event instead, and h2 opens a trace-level span
/// on every connection poll: under single-token load, that dynamic
/// filtering (and the spans it let the registry create) was a tenth of
/// jwtd's CPU samples, and the server CPU per call fell 22% without it.
#[derive(Clone, Copy)]
pub struct ByMetadata(pub fn(&tracing::Metadata<'_>) -> bool);

impl<S> tracing_subscriber::layer::Filter<S> for ByMetadata {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        (self.0)(meta)
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if (self.0)(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn file() -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: Some("http://file:4317".into()),
            otlp_protocol: Some(Protocol::HttpProtobuf),
            service_name: Some("from-file".into()),
            resource_attributes: [("team".to_owned(), "auth".to_owned())].into(),
            sampler: Some(SamplerChoice {
                parent_based: false,
                ratio: 0.5,
            }),
            max_queued_spans: Some(100),
        }
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint_or_when_disabled() {
        let none = TraceSettings::resolve(&TelemetryConfig::default(), env(&[]));
        assert_eq!(none, Ok(None));
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(
                TraceSettings::resolve(&file(), env(&[off])),
                Ok(None),
                "{off:?}"
            );
        }
        let err = TraceSettings::resolve(&file(), env(&[("OTEL_TRACES_EXPORTER", "zipkin")]));
        assert!(matches!(
            err,
            Err(TraceError::Env {
                variable: "OTEL_TRACES_EXPORTER",
                ..
            })
        ));
    }

    #[test]
    fn the_file_applies_when_the_environment_is_silent() {
        let s = TraceSettings::resolve(&file(), env(&[])).unwrap().unwrap();
        assert_eq!(s.endpoint, Endpoint::Base("http://file:4317".into()));
        assert_eq!(s.url(), "http://file:4317/v1/traces");
        assert_eq!(s.service_name, "from-file");
        assert_eq!(s.resource_attributes["team"], "auth");
        assert_eq!(s.sampler.ratio, 0.5);
        assert!(!s.sampler.parent_based);
        assert_eq!(s.max_queued_spans, 100);
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=platform,region=eu%2Dwest"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "7"),
        ];
        let s = TraceSettings::resolve(&file(), env(&vars))
            .unwrap()
            .unwrap();
        assert_eq!(s.url(), "http://env:4317");
        assert_eq!(s.protocol, Protocol::Grpc);
        assert_eq!(s.service_name, "from-env");
        assert_eq!(s.resource_attributes["team"], "platform");
        assert_eq!(s.resource_attributes["region"], "eu-west");
        assert_eq!(
            s.sampler,
            SamplerChoice {
                parent_based: true,
                ratio: 0.1
            }
        );
        assert_eq!(s.max_queued_spans, 7);
        // The per-signal endpoint is a full URL, used as given.
        let traces = [(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://env:4318/custom/path",
        )];
        let s = TraceSettings::resolve(&file(), env(&traces))
            .unwrap()
            .unwrap();
        assert_eq!(s.url(), "http://env:4318/custom/path");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_RESOURCE_ATTRIBUTES", "novalue"),
            ("OTEL_RESOURCE_ATTRIBUTES", "k=%zz"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ] {
            match TraceSettings::resolve(&file(), env(&[(var, value)])) {
                Err(TraceError::Env { variable, .. }) => assert_eq!(variable, var, "{value}"),
                other => panic!("{var}={value}: {other:?}"),
            }
        }
        let ratio = [
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ];
        assert!(TraceSettings::resolve(&file(), env(&ratio)).is_err());
    }

    #[test]
    fn samplers_follow_the_specification_names() {
        let parse = |n, a| SamplerChoice::parse(n, a).unwrap();
        assert_eq!(parse("always_off", None).ratio, 0.0);
        assert!(!parse("always_on", None).parent_based);
        assert!(parse("parentbased_always_on", None).parent_based);
        assert_eq!(parse("traceidratio", Some("0.25")).ratio, 0.25);
        assert_eq!(parse("parentbased_traceidratio", None).ratio, 1.0);
        assert_eq!(
            SamplerChoice::default(),
            parse("parentbased_always_on", None)
        );
    }

    #[test]
    fn every_status_has_a_batch_field() {
        let mut names = Vec::new();
        for n in 1.. {
            let Ok(status) = crate::pb::Status::try_from(n) else {
                break;
            };
            names.push(format!("jwtd.status.{}", status.as_str_name()));
        }
        let mut fields: Vec<String> = STATUS_FIELDS.iter().map(|f| (*f).to_owned()).collect();
        names.sort();
        fields.sort();
        assert_eq!(names, fields);
    }

    #[test]
    fn token_facts_say_nothing_secret_or_unbounded() {
        use crate::verifier::policy::{IssuerPolicy, KeyState, TrustedIssuer};
        let policy = IssuerPolicy::new("https://iss.example").unwrap();
        let trust = Trust::new(
            vec![TrustedIssuer {
                policy: Arc::new(policy),
                keys: KeyState::Unavailable,
            }],
            8192,
        );
        let b64 = |s: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
        };
        let long_kid = "k".repeat(500);
        let header = b64(&format!(r#"{{"alg":"ES256","kid":"{long_kid}"}}"#));
        let token = |iss: &str| format!("{header}.{}.c2ln", b64(&format!(r#"{{"iss":"{iss}"}}"#)));
        let facts = token_facts(&token("https://iss.example"), &trust);
        assert_eq!(facts.alg, "ES256");
        assert_eq!(facts.kid.as_deref(), Some(&long_kid[..MAX_KID_BYTES]));
        assert_eq!(facts.issuer, "https://iss.example");
        assert_eq!(facts.digest.len(), 16);
        let stranger = token_facts(&token("https://evil.example"), &trust);
        assert_eq!(stranger.issuer, "untrusted");
        let garbage = token_facts("garbage", &trust);
        assert_eq!((garbage.alg, garbage.kid), ("unknown", None));
    }
}
