//! What operators see: Prometheus metrics and OpenTelemetry traces.

pub mod audit;
pub mod otel;
pub mod telemetry;
