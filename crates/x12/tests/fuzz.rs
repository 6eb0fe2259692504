//! "Segment soup": random bytes, random mixes of real segments from the corpus, truncations,
//! separator swaps and byte noise through the tokenizer, the envelope reader, `TypedSet::read`,
//! the 997 builder and the writer. Nothing may panic, and every error found inside an
//! interchange names its segment.
//!
//! 2000 cases per property by default; set `PROPTEST_CASES` to change it.

use std::path::Path;
use std::sync::OnceLock;

use crossdock_x12::tokenizer::tokenize;
use crossdock_x12::{Date, FunctionalAck997, OutboundEnvelope, Time, TypedSet, parse, render};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

/// Real segments (without terminator) from every corpus file that uses `*` and `~`.
fn pool() -> &'static [String] {
    static POOL: OnceLock<Vec<String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let mut segments = Vec::new();
        for dir in std::fs::read_dir(testdata).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let text = String::from_utf8_lossy(&std::fs::read(file.path()).unwrap_or_default())
                    .into_owned();
                segments.extend(
                    text.split('~')
                        .map(str::trim)
                        .filter(|s| s.len() > 3 && s.get(2..4).is_some_and(|t| t.contains('*')))
                        .filter(|s| !s.starts_with("ISA"))
                        .map(str::to_string),
                );
            }
        }
        segments.sort_unstable();
        segments.dedup();
        assert!(
            segments.len() > 500,
            "only {} segments in the pool",
            segments.len()
        );
        segments
    })
}

/// Each typed set and a beginning segment for it, so that typed readers get real work: the ST01
/// and the first real segment with the beginning id (or a made-up one when the corpus has none).
fn openers() -> Vec<(&'static str, String)> {
    let beginnings = [
        ("846", "BIA"),
        ("850", "BEG"),
        ("855", "BAK"),
        ("856", "BSN"),
        ("810", "BIG"),
        ("940", "W05"),
        ("943", "W06"),
        ("944", "W17"),
        ("945", "W06"),
        ("947", "W15"),
        ("180", "BGN"),
        ("997", "AK1"),
    ];
    beginnings
        .into_iter()
        .map(|(set, id)| {
            let prefix = format!("{id}*");
            let segment = pool()
                .iter()
                .find(|s| s.starts_with(&prefix))
                .cloned()
                .unwrap_or_else(|| format!("{id}*20240101*X1*PO"));
            (set, segment)
        })
        .collect()
}

/// Element, component and segment separators to swap in.
const SEPARATORS: [(char, char, char); 6] = [
    ('*', '>', '~'),
    ('*', ':', '~'),
    ('|', '^', '\n'),
    ('~', '>', '*'),
    ('*', '~', '~'),
    ('\u{1D}', '\u{1F}', '\u{1C}'),
];

/// An interchange made of real segments in random order, with random damage.
fn soup() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(prop::sample::select(pool().to_vec()), 0..40),
        prop::sample::select(SEPARATORS.to_vec()),
        prop::sample::select(openers()),
        any::<(bool, bool, bool)>(),
        prop::option::of(any::<prop::sample::Index>()),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    )
        .prop_map(
            |(
                body,
                (element, component, terminator),
                (set, beginning),
                (gs, st, end),
                cut,
                noise,
            )| {
                let mut text = format!(
                    "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       \
                 *240101*1200*U*00401*000000001*0*P*{component}{terminator}\n"
                );
                if gs {
                    text.push_str("GS*IN*A*B*20240101*1200*1*X*004010~\n");
                }
                if st {
                    text.push_str(&format!("ST*{set}*0001~\n{beginning}~\n"));
                }
                for segment in &body {
                    text.push_str(segment);
                    text.push('~');
                }
                if end {
                    text.push_str("SE*9*0001~GE*1*1~IEA*1*000000001~");
                }
                let swapped: String = text
                    .chars()
                    .map(|c| match c {
                        '*' => element,
                        '~' => terminator,
                        c => c,
                    })
                    .collect();
                let mut bytes = swapped.into_bytes();
                if let Some(cut) = cut {
                    bytes.truncate(cut.index(bytes.len() + 1));
                }
                for (at, byte) in noise {
                    if !bytes.is_empty() {
                        let i = at.index(bytes.len());
                        bytes[i] = byte;
                    }
                }
                bytes
            },
        )
}

/// Everything the crate does with an input; panics only if an invariant is broken.
fn exercise(bytes: &[u8]) {
    let _ = tokenize(bytes);
    let Ok(document) = parse(bytes) else { return };
    let mut diagnostics = document.diagnostics.clone();
    let mut typed = Vec::new();
    for (_, set) in document.sets() {
        typed.extend(TypedSet::read(set, &mut diagnostics));
    }
    for d in diagnostics.iter().filter(|d| d.is_error()) {
        assert!(d.segment.is_some(), "an error without a segment: {d}");
    }
    let envelope = OutboundEnvelope::new(
        ("ZZ", "A"),
        ("ZZ", "B"),
        1,
        1,
        Date::new(2024, 1, 1).expect("date"),
        Time::hm(0, 0).expect("time"),
    );
    for group in document.interchanges.iter().flat_map(|i| &i.groups) {
        let ack = FunctionalAck997::for_group(group, &diagnostics);
        let _ = render(&envelope, &[ack.into()]);
    }
    for set in typed {
        let _ = render(&envelope, &[set]);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        exercise(&bytes);
    }

    #[test]
    fn random_bytes_after_an_isa_never_panic(tail in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = b"ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *240101*1200*U*00401*000000001*0*P*>~".to_vec();
        bytes.extend(tail);
        exercise(&bytes);
    }

    #[test]
    fn segment_soup_never_panics(bytes in soup()) {
        exercise(&bytes);
    }
}

/// The soup is only worth it if typed readers see sets: a sample must hold some.
#[test]
fn the_soup_reaches_the_typed_readers() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = soup();
    let mut typed = 0;
    for _ in 0..500 {
        let bytes = strategy.new_tree(&mut runner).expect("a value").current();
        if let Ok(document) = parse(&bytes) {
            for (_, set) in document.sets() {
                typed += usize::from(TypedSet::read(set, &mut Vec::new()).is_some());
            }
        }
    }
    assert!(typed >= 50, "only {typed} typed sets in 500 samples");
}
