//! Each API's wire format as types, one module per API: what a client or an upstream sends and
//! answers. Only the fields a translation acts on are typed; the rest ride along untouched.
//! Translating between formats is `translate`'s; calling upstreams is `providers`'.

pub mod anthropic;
pub mod bedrock;
pub mod gemini;
pub mod members;
pub mod openai;
pub mod responses;
