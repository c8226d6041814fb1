//! Writes OpenAI's two byte-pair vocabularies in the compact form the sidecar counts with.
//!
//! tiktoken-rs publishes the vocabularies only inside its `CoreBPE`, which holds every token as
//! its own heap allocation three times over (about 47 MiB resident for o200k_base). Here, at build
//! time, each vocabulary is read once through tiktoken-rs and written as one file: the token
//! count, each rank's end offset, then every token's bytes end to end in rank order. The sidecar
//! embeds the files (`tokenizer/bpe.rs`) and only indexes them at run time, so the counts come
//! from tiktoken-rs's own data without a copy of it in this repository.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo::rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    for (name, bpe) in [
        ("o200k_base", tiktoken_rs::o200k_base()?),
        ("cl100k_base", tiktoken_rs::cl100k_base()?),
    ] {
        fs::write(out.join(format!("{name}.ranks")), compact(&bpe)?)?;
    }
    Ok(())
}

/// The ordinary tokens of `bpe`, ranks 0, 1, … up to the first rank it does not know (the
/// special tokens come after a gap), as `count, ends[count], bytes`; integers little-endian u32.
fn compact(bpe: &tiktoken_rs::CoreBPE) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let special = bpe.special_tokens();
    let mut ends = Vec::new();
    let mut bytes = Vec::new();
    for rank in 0u32.. {
        let Ok(token) = bpe.decode_bytes(&[rank]) else { break };
        if std::str::from_utf8(&token).is_ok_and(|t| special.contains(t)) {
            break;
        }
        bytes.extend_from_slice(&token);
        ends.push(u32::try_from(bytes.len())?);
    }
    let mut file = Vec::with_capacity(4 + 4 * ends.len() + bytes.len());
    file.extend_from_slice(&u32::try_from(ends.len())?.to_le_bytes());
    for end in ends {
        file.extend_from_slice(&end.to_le_bytes());
    }
    file.extend_from_slice(&bytes);
    Ok(file)
}
