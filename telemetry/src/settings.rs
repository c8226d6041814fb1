//! The standard `OTEL_*` variables this crate acts on, read from one lookup function so that
//! tests pass a map instead of the process environment. The exporter itself reads the endpoint
//! and `OTEL_EXPORTER_OTLP_HEADERS` again when it is built (the same variables, the SDK's own
//! rules for the `/v1/traces` suffix and header encoding); what is parsed here decides whether
//! tracing is on at all, over which protocol, and how it samples.

use opentelemetry_sdk::trace::Sampler;

/// Why the `OTEL_*` variables cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` names a protocol this build does not export.
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL={0:?} is not supported: use grpc or http/protobuf")]
    Protocol(String),
    /// `OTEL_TRACES_SAMPLER` names no sampler this build has.
    #[error(
        "OTEL_TRACES_SAMPLER={0:?} is not supported: use always_on, always_off, traceidratio, \
         parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
    )]
    Sampler(String),
    /// `OTEL_TRACES_SAMPLER_ARG` is not a ratio in [0, 1].
    #[error("OTEL_TRACES_SAMPLER_ARG={0:?} is not a number between 0 and 1")]
    SamplerArg(String),
}

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (`grpc`).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`http/protobuf`, the specification's default).
    HttpProtobuf,
}

/// Which spans are kept: the specification's samplers this build has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Every span.
    AlwaysOn,
    /// No span.
    AlwaysOff,
    /// This share of traces, by trace id.
    Ratio(f64),
    /// The caller's decision when there is a caller, else the inner choice.
    ParentBased(Root),
}

/// What a parent-based sampler does for a trace that starts here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    /// Sample it.
    AlwaysOn,
    /// Drop it.
    AlwaysOff,
    /// Sample this share, by trace id.
    Ratio(f64),
}

impl Sampling {
    /// The SDK's sampler for this choice.
    pub fn to_sdk(self) -> Sampler {
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::Ratio(r) => Sampler::TraceIdRatioBased(r),
            Self::ParentBased(root) => Sampler::ParentBased(Box::new(match root {
                Root::AlwaysOn => Sampler::AlwaysOn,
                Root::AlwaysOff => Sampler::AlwaysOff,
                Root::Ratio(r) => Sampler::TraceIdRatioBased(r),
            })),
        }
    }
}

/// What the `OTEL_*` variables ask for when tracing is on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How spans travel.
    pub protocol: Protocol,
    /// Which spans are kept.
    pub sampler: Sampling,
    /// The collector, as configured (for the startup log line; never carries headers).
    pub endpoint: String,
}

/// Reads the variables through `var`: `Ok(None)` when tracing is off, which it is unless an
/// endpoint is set and `OTEL_SDK_DISABLED` is not `true`.
pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Option<Settings>, SettingsError> {
    let set = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let Some(endpoint) = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
    else {
        return Ok(None);
    };
    let protocol = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
    let protocol = match protocol.as_deref() {
        None | Some("http/protobuf") => Protocol::HttpProtobuf,
        Some("grpc") => Protocol::Grpc,
        Some(other) => return Err(SettingsError::Protocol(other.to_owned())),
    };
    let sampler = sampler(
        set("OTEL_TRACES_SAMPLER").as_deref(),
        set("OTEL_TRACES_SAMPLER_ARG").as_deref(),
    )?;
    Ok(Some(Settings {
        protocol,
        sampler,
        endpoint,
    }))
}

/// Reads the process environment (see [`from_lookup`]).
pub fn from_env() -> Result<Option<Settings>, SettingsError> {
    from_lookup(|name| std::env::var(name).ok())
}

/// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name; the specification's
/// default is `parentbased_always_on` (a caller's decision is kept, a new trace is sampled).
fn sampler(name: Option<&str>, arg: Option<&str>) -> Result<Sampling, SettingsError> {
    let ratio = || match arg {
        None => Ok(1.0),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| SettingsError::SamplerArg(text.to_owned())),
    };
    Ok(match name.map(str::to_ascii_lowercase).as_deref() {
        Some("always_on") => Sampling::AlwaysOn,
        Some("always_off") => Sampling::AlwaysOff,
        Some("traceidratio") => Sampling::Ratio(ratio()?),
        None | Some("parentbased_always_on") => Sampling::ParentBased(Root::AlwaysOn),
        Some("parentbased_always_off") => Sampling::ParentBased(Root::AlwaysOff),
        Some("parentbased_traceidratio") => Sampling::ParentBased(Root::Ratio(ratio()?)),
        Some(_) => return Err(SettingsError::Sampler(name.unwrap_or_default().to_owned())),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Option<Settings>, SettingsError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn tracing_is_off_without_an_endpoint() {
        assert!(
            read(&[("OTEL_TRACES_SAMPLER", "always_on"), ("OTEL_SERVICE_NAME", "x")])
                .unwrap()
                .is_none()
        );
        assert!(read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]).unwrap().is_none());
    }

    #[test]
    fn sdk_disabled_wins_over_an_endpoint() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ];
        assert!(read(&vars).unwrap().is_none());
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_SDK_DISABLED", "false"),
        ];
        assert!(read(&vars).unwrap().is_some());
    }

    #[test]
    fn the_traces_endpoint_alone_turns_tracing_on_and_wins_over_the_general_one() {
        let s = read(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")])
            .unwrap()
            .unwrap();
        assert_eq!(s.endpoint, "http://c:4318/v1/traces");
        let s = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/v1/traces"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://traces:4318/v1/traces");
    }

    #[test]
    fn the_protocol_defaults_to_http_protobuf_and_accepts_grpc() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        assert_eq!(read(&[endpoint]).unwrap().unwrap().protocol, Protocol::HttpProtobuf);
        let grpc = read(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])
            .unwrap()
            .unwrap();
        assert_eq!(grpc.protocol, Protocol::Grpc);
        let json = read(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap_err();
        assert_eq!(json, SettingsError::Protocol("http/json".into()));
    }

    #[test]
    fn the_sampler_defaults_to_parent_based_always_on() {
        let s = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])
            .unwrap()
            .unwrap();
        assert_eq!(s.sampler, Sampling::ParentBased(Root::AlwaysOn));
    }

    #[test]
    fn each_named_sampler_is_read_with_its_ratio() {
        let cases = [
            ("always_on", None, Sampling::AlwaysOn),
            ("ALWAYS_OFF", None, Sampling::AlwaysOff),
            ("traceidratio", Some("0.25"), Sampling::Ratio(0.25)),
            ("traceidratio", None, Sampling::Ratio(1.0)),
            ("parentbased_always_off", None, Sampling::ParentBased(Root::AlwaysOff)),
            (
                "parentbased_traceidratio",
                Some("0.5"),
                Sampling::ParentBased(Root::Ratio(0.5)),
            ),
        ];
        for (name, arg, expected) in cases {
            assert_eq!(sampler(Some(name), arg).unwrap(), expected, "{name} {arg:?}");
        }
    }

    #[test]
    fn an_unknown_sampler_or_a_ratio_out_of_range_is_an_error() {
        assert_eq!(
            sampler(Some("jaeger_remote"), None).unwrap_err(),
            SettingsError::Sampler("jaeger_remote".into())
        );
        assert_eq!(
            sampler(Some("traceidratio"), Some("1.5")).unwrap_err(),
            SettingsError::SamplerArg("1.5".into())
        );
        assert_eq!(
            sampler(Some("traceidratio"), Some("half")).unwrap_err(),
            SettingsError::SamplerArg("half".into())
        );
    }
}
