//! The section comparing the client APIs: a Responses and an Anthropic Messages request beside a
//! chat request, through the same targets in the same minutes, as ratios to chat.

use std::fmt::Write as _;

use super::{fmt_us, ratio};
use crate::driver::apis::Api;
use crate::driver::results::{ApiResults, Run, Target};

/// Writes the section, or nothing when the run measured no API beside chat.
pub(super) fn section(out: &mut String, run: &Run) {
    if run.apis.iter().all(|r| r.api == Api::Chat) {
        return;
    }
    let _ = writeln!(
        out,
        "## Client APIs beside chat (the full-path sidecar translates Responses and Messages to chat for its \
         `openai-compatible` backend; the upstream answers each path itself for the direct call and the floor)\n"
    );
    let _ = writeln!(
        out,
        "| API | target | p50, one client | added p50 over direct | added ÷ chat's | CPU per request (fixed count) | CPU ÷ chat's |\n\
         |---|---|---|---|---|---|---|"
    );
    let p50 = |r: &ApiResults| r.one_client.as_ref().map_or(f64::NAN, |l| l.p50_us);
    let cpu = |r: &ApiResults| {
        r.cpu_run
            .as_ref()
            .and_then(|l| l.cpu_us_per_request)
            .unwrap_or(f64::NAN)
    };
    let added = |api: Api, target: Target| -> f64 {
        match (run.api(api, target), run.api(api, Target::Direct)) {
            (Some(t), Some(d)) => p50(t) - p50(d),
            _ => f64::NAN,
        }
    };
    for api in Api::ALL {
        for r in run.apis.iter().filter(|r| r.api == api) {
            let chat = run.api(Api::Chat, r.target);
            let (added_here, added_chat) = (added(api, r.target), added(Api::Chat, r.target));
            let direct = r.target == Target::Direct;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                api.label(),
                r.target.label(),
                fmt_us(p50(r)),
                if direct { "–".to_owned() } else { fmt_us(added_here) },
                if direct || api == Api::Chat {
                    "–".to_owned()
                } else {
                    ratio(added_here, added_chat)
                },
                fmt_us(cpu(r)),
                if api == Api::Chat {
                    "–".to_owned()
                } else {
                    chat.map_or_else(|| "–".to_owned(), |c| ratio(cpu(r), cpu(c)))
                },
            );
        }
    }
    let full: Vec<&ApiResults> = run
        .apis
        .iter()
        .filter(|r| r.target == Target::SidecarFull && r.streaming.is_some())
        .collect();
    let chat_stream = run
        .api(Api::Chat, Target::SidecarFull)
        .and_then(|r| r.streaming.clone());
    if let (false, Some(chat_stream)) = (full.is_empty(), chat_stream) {
        let _ = writeln!(
            out,
            "\nStreamed through the full-path sidecar (the upstream's 100 chat chunks, retold in each API's events):\n\n\
             | API | streams | events seen | TTFT p50 | TTFT ÷ chat's | whole stream p50 | whole ÷ chat's |\n\
             |---|---|---|---|---|---|---|"
        );
        for r in full {
            let Some(s) = &r.streaming else { continue };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.api.label(),
                s.streams,
                s.events,
                fmt_us(s.ttft_p50_us),
                ratio(s.ttft_p50_us, chat_stream.ttft_p50_us),
                fmt_us(s.total_p50_us),
                ratio(s.total_p50_us, chat_stream.total_p50_us),
            );
        }
    }
    let _ = writeln!(
        out,
        "\nAdded p50 = the target's median less the direct call's, for the same API; its ratio to chat's is what \
         one API costs beside the other through the same proxy. Chat is measured again here, in the same \
         minutes as the other APIs, so its figures may differ a little from the tables above.\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::results::Load;

    fn api(api: Api, target: Target, p50: f64, cpu: f64) -> ApiResults {
        let load = Load {
            p50_us: p50,
            cpu_us_per_request: Some(cpu),
            ..Load::default()
        };
        let mut r = ApiResults::new(api, target);
        r.one_client = Some(load.clone());
        r.cpu_run = Some(load);
        r
    }

    #[test]
    fn responses_rows_are_ratios_to_chat_through_the_same_target() {
        let mut run = super::super::tests::run(Vec::new(), Vec::new());
        run.apis = vec![
            api(Api::Chat, Target::Direct, 100.0, 10.0),
            api(Api::Chat, Target::SidecarFull, 300.0, 40.0),
            api(Api::Responses, Target::Direct, 100.0, 10.0),
            api(Api::Responses, Target::SidecarFull, 400.0, 60.0),
        ];
        let mut out = String::new();
        section(&mut out, &run);
        assert!(
            out.contains("| Responses | sidecar (full) | 400 µs | 300 µs | 1.50× | 60.0 µs | 1.50× |"),
            "{out}"
        );
        assert!(
            out.contains("| chat completions | sidecar (full) | 300 µs | 200 µs | – | 40.0 µs | – |"),
            "{out}"
        );
    }

    #[test]
    fn a_run_without_other_apis_has_no_section() {
        let run = super::super::tests::run(Vec::new(), Vec::new());
        let mut out = String::new();
        section(&mut out, &run);
        assert!(out.is_empty());
    }
}
