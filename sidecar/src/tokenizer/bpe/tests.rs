//! The compact encodings against tiktoken-rs's own: the same tokens, the same counts.

use super::*;

/// Both encodings, each beside tiktoken-rs's for the same vocabulary.
fn pairs() -> [(Encoding, &'static tiktoken_rs::CoreBPE); 2] {
    [
        (o200k_base().unwrap(), tiktoken_rs::o200k_base_singleton()),
        (cl100k_base().unwrap(), tiktoken_rs::cl100k_base_singleton()),
    ]
}

/// A deterministic generator (64-bit LCG): the corpus is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.next() % from.len()]
    }
}

const FRAGMENTS: &[&str] = &[
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "don't I'LL we've they'RE it's",
    "naïve café résumé",
    "日本語のテキストです。",
    "中文文本，标点符号！",
    "한국어 문장입니다",
    "emoji 😀👍🏽 👨‍👩‍👧 ok",
    "fn main() { println!(\"{}\", 42); }",
    "for (let i = 0; i < n; i++) { sum += a[i]; }",
    "def f(x):\n    return x ** 2\n",
    "SELECT * FROM users WHERE id = 7;",
    "1234567890 3.14159 -0.5e10 1,000,000",
    "a\r\nb\rc\n",
    "    indented\n        more\n\n\n",
    "\t\t\ttabs",
    "ÀÉÎÕÜ ß Σίσυφος ΑΒΓ",
    "مرحبا بالعالم",
    "שלום עולם",
    "Привет, мир!",
    "x/y/z// https://example.com/a?b=c&d=e#f",
    "   ",
    "\u{200b}\u{feff}\u{a0}",
    "e\u{301} a\u{308} \u{1f1fa}\u{1f1f8}",
    "$$$ !!! ??? ... --- ***",
    "CamelCaseWords and UPPERlower MiXeD",
    "{\"json\": [1, 2, {\"k\": null}]}",
    "<div class=\"x\">&amp;</div>",
    "0x1F 0b1010 1e-9 ½ ⅓ ٣٤٥",
    "'s 'S 'd 'll 'Ve",
];

/// Pieces of 100 bytes or more: tiktoken merges them with its heap-based variant.
fn long_pieces(rng: &mut Lcg) -> Vec<String> {
    let letters =
        |rng: &mut Lcg, n: usize| -> String { (0..n).map(|_| char::from(b'a' + (rng.next() % 26) as u8)).collect() };
    vec![
        "a".repeat(150),
        "ab".repeat(120),
        letters(rng, 130),
        letters(rng, 700),
        "7".repeat(400),
        " ".repeat(300) + "x",
        "\n".repeat(200),
        "!?".repeat(90),
        "日本".repeat(80),
        "é".repeat(120),
        format!("{}=", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo".repeat(5)),
    ]
}

/// Texts of random code points, mostly from blocks tokenizers treat differently.
fn random_chars(rng: &mut Lcg) -> String {
    const BLOCKS: &[(u32, u32)] = &[
        (0x20, 0x7e),
        (0x09, 0x0d),
        (0xa0, 0x24f),
        (0x300, 0x36f),
        (0x370, 0x4ff),
        (0x600, 0x6ff),
        (0x900, 0x97f),
        (0x3040, 0x30ff),
        (0x4e00, 0x9fff),
        (0xac00, 0xd7a3),
        (0x1f300, 0x1faff),
    ];
    let len = rng.next() % 40 + 1;
    (0..len)
        .filter_map(|_| {
            let (lo, hi) = BLOCKS[rng.next() % BLOCKS.len()];
            char::from_u32(lo + (rng.next() as u32) % (hi - lo + 1))
        })
        .collect()
}

fn corpus() -> Vec<String> {
    let mut rng = Lcg(21);
    let mut texts: Vec<String> = FRAGMENTS.iter().map(|f| f.to_string()).collect();
    for i in 0..3000 {
        let mut text = String::new();
        for _ in 0..(i % 9 + 1) {
            text.push_str(rng.pick(FRAGMENTS));
            text.push_str(&" ".repeat(rng.next() % 4));
            if rng.next().is_multiple_of(3) {
                text.push_str(rng.pick(&["\n", "\r\n", "\t", "  \n ", ""]));
            }
        }
        texts.push(text);
    }
    texts.extend((0..2000).map(|_| random_chars(&mut rng)));
    texts.extend(long_pieces(&mut rng));
    texts.push(String::new());
    texts
}

#[test]
fn every_rank_holds_tiktokens_bytes_and_is_found_by_them() {
    for (encoding, tiktoken) in pairs() {
        let ranks = encoding.index.len() as Rank;
        assert!(ranks >= 100_000, "{}: {ranks}", encoding.name);
        for rank in 0..ranks {
            let bytes = encoding.token(rank);
            assert_eq!(
                tiktoken.decode_bytes(&[rank]).unwrap(),
                bytes,
                "{} rank {rank}",
                encoding.name
            );
            assert_eq!(encoding.rank(bytes), Some(rank), "{} rank {rank}", encoding.name);
        }
        // The next rank is a special token or none: the table holds every ordinary token.
        let next = tiktoken.decode_bytes(&[ranks]);
        assert!(
            next.is_err()
                || tiktoken
                    .special_tokens()
                    .iter()
                    .any(|s| next.as_deref().ok() == Some(s.as_bytes())),
            "{}",
            encoding.name
        );
    }
}

#[test]
fn counts_equal_tiktokens_on_a_varied_corpus() {
    let texts = corpus();
    for (encoding, tiktoken) in pairs() {
        for text in &texts {
            assert_eq!(
                encoding.count(text).unwrap(),
                tiktoken.encode_ordinary(text).len() as u64,
                "{}: {text:?}",
                encoding.name
            );
        }
    }
}

#[test]
fn a_text_that_is_one_token_counts_one_and_bytes_merge_as_tiktoken_merges_them() {
    let (o200k, _) = &pairs()[0];
    assert_eq!(o200k.count("Hello world").unwrap(), 2);
    assert_eq!(o200k.count("").unwrap(), 0);
    // Both merge routines give tiktoken's parts for the same piece.
    for piece in ["unbelievably", "zzzzqqqqxxxx", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"] {
        assert_eq!(
            o200k.merge_small(piece.as_bytes()),
            o200k.merge_large(piece.as_bytes()),
            "{piece}"
        );
    }
}

#[test]
fn a_malformed_table_is_refused() {
    let pattern = tiktoken_rs::O200K_BASE_PAT_STR;
    for table in [
        &b""[..],
        &[2, 0, 0, 0, 1, 0, 0, 0][..],
        &[1, 0, 0, 0, 1, 0, 0, 0, b'a', b'b'][..],
    ] {
        assert!(
            matches!(Encoding::load("t", table, pattern), Err(LoadError::Table("t"))),
            "{table:?}"
        );
    }
    // Two ranks with the same bytes.
    let twice = Encoding::load("t", &[2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', b'a'], pattern);
    assert!(matches!(twice, Err(LoadError::Table("t"))));
    let bad_pattern = Encoding::load("t", &[1, 0, 0, 0, 1, 0, 0, 0, b'a'], "(");
    assert!(matches!(bad_pattern, Err(LoadError::Pattern { name: "t", .. })));
}
