//! Translations between API formats, as pure functions, one module per direction, named
//! `<from>_to_<to>`: a provider translates the OpenAI request it is given into its upstream's
//! format and the answer back; an inbound API translates its requests into OpenAI's for the
//! pipeline and the pipeline's answers back. Inside, a function is named for what it translates
//! (`request`, `response`, `usage`, `embeddings_request`, …), so a call reads
//! `openai_to_anthropic::request(…)`. The formats themselves are in `formats`.

pub mod anthropic_to_openai;
pub mod gemini_to_openai;
pub mod openai_to_anthropic;
pub mod openai_to_gemini;
