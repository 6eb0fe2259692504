//! What the 997 rejects applies nothing, and what it accepts applies: envelopes wrong at each
//! level (interchange, group, set), lines failing the check every door makes, and a property
//! over mutated counts and control numbers.
//!
//! The interchanges are built here: one ISA with two groups, the first holding two 846s, the
//! second one 947, every count and control number right unless a test changes one.

use std::collections::{BTreeSet, HashSet};

use crossdock_edi::inbound::{Level, Mapped, map_document};
use crossdock_edi::partner::{Known, PartnerEntry, PartnerSpec};
use crossdock_master::{MasterData, load};
use crossdock_model::event::EventData;
use crossdock_model::{ExceptionKind, Timestamp};
use proptest::prelude::*;

fn partner() -> PartnerSpec {
    let entry: PartnerEntry = toml_edit::de::from_str(
        r#"
id = "acme"
source = "acme-wms"
isa_id = "ACME"
location = "DC-EAST"
channel = "retail"
status_947 = { "AV" = "damaged" }
"#,
    )
    .expect("partner entry");
    let known = Known {
        sources: &|_| true,
        locations: &|_| true,
        channels: &|_| true,
    };
    entry
        .check(
            std::path::Path::new("/tmp"),
            std::path::Path::new("/tmp/data"),
            &known,
        )
        .expect("a valid partner")
}

fn master() -> MasterData {
    let items = load::items_from_str("items.csv", "item\nSKU-1\nSKU-2\nSKU-3\nSKU-4\n").unwrap();
    let locations =
        load::locations_from_str("locations.csv", "location\nDC-EAST\nDC-WEST\n").unwrap();
    MasterData::new(items, locations, Vec::new(), Vec::new())
}

/// One transaction set: its id, ST02 and body (between ST and SE), and what its trailer says
/// when a test makes it wrong.
#[derive(Debug, Clone)]
struct Set {
    id: &'static str,
    st02: String,
    body: Vec<String>,
    se01: Option<String>,
    se02: Option<String>,
    se: bool,
}

#[derive(Debug, Clone)]
struct Group {
    functional: &'static str,
    gs06: u32,
    sets: Vec<Set>,
    ge01: Option<String>,
    ge02: Option<String>,
    ge: bool,
}

#[derive(Debug, Clone)]
struct Interchange {
    isa09: String,
    isa13: u32,
    groups: Vec<Group>,
    iea01: Option<String>,
    iea02: Option<String>,
    iea: bool,
}

/// What a test makes wrong in an envelope.
type Change<T> = fn(&mut T);

fn set(id: &'static str, st02: &str, body: &[&str]) -> Set {
    Set {
        id,
        st02: st02.into(),
        body: body.iter().map(|s| s.to_string()).collect(),
        se01: None,
        se02: None,
        se: true,
    }
}

/// ISA 101; group 7: two 846s (0001: SKU-1 40, SKU-2 7; 0002: SKU-3 5); group 8: a 947
/// (SKU-1 damaged 2, SKU-4 adjusted -3).
fn clean() -> Interchange {
    Interchange {
        isa09: "261123".into(),
        isa13: 101,
        groups: vec![
            Group {
                functional: "IB",
                gs06: 7,
                sets: vec![
                    set(
                        "846",
                        "0001",
                        &[
                            "BIA*00*MM*INV1*20261123",
                            "LIN*1*VN*SKU-1",
                            "QTY*17*40*EA",
                            "LIN*2*VN*SKU-2",
                            "QTY*17*7*EA",
                        ],
                    ),
                    set(
                        "846",
                        "0002",
                        &["BIA*00*MM*INV2*20261123", "LIN*1*VN*SKU-3", "QTY*17*5*EA"],
                    ),
                ],
                ge01: None,
                ge02: None,
                ge: true,
            },
            Group {
                functional: "AW",
                gs06: 8,
                sets: vec![set(
                    "947",
                    "0001",
                    &[
                        "W15*20261123*ADJ1",
                        "LX*1",
                        "W19*AV*-2*EA**VN*SKU-1",
                        "LX*2",
                        "W19*07*-3*EA**VN*SKU-4",
                    ],
                )],
                ge01: None,
                ge02: None,
                ge: true,
            },
        ],
        iea01: None,
        iea02: None,
        iea: true,
    }
}

impl Interchange {
    fn text(&self) -> String {
        let mut segs = vec![format!(
            "ISA*00*          *00*          *ZZ*ACME           *ZZ*CROSSDOCK      *{}*1000*U*00401*{:09}*0*P*>",
            self.isa09, self.isa13
        )];
        for g in &self.groups {
            segs.push(format!(
                "GS*{}*ACME*CROSSDOCK*20261123*1000*{}*X*004010",
                g.functional, g.gs06
            ));
            for s in &g.sets {
                segs.push(format!("ST*{}*{}", s.id, s.st02));
                segs.extend(s.body.iter().cloned());
                if s.se {
                    segs.push(format!(
                        "SE*{}*{}",
                        s.se01.clone().unwrap_or((s.body.len() + 2).to_string()),
                        s.se02.clone().unwrap_or(s.st02.clone())
                    ));
                }
            }
            if g.ge {
                segs.push(format!(
                    "GE*{}*{}",
                    g.ge01.clone().unwrap_or(g.sets.len().to_string()),
                    g.ge02.clone().unwrap_or(g.gs06.to_string())
                ));
            }
        }
        if self.iea {
            segs.push(format!(
                "IEA*{}*{}",
                self.iea01.clone().unwrap_or(self.groups.len().to_string()),
                self.iea02.clone().unwrap_or(format!("{:09}", self.isa13))
            ));
        }
        segs.iter().map(|s| format!("{s}~\n")).collect()
    }
}

fn map_text(text: &str, file: &str) -> Mapped {
    let doc = crossdock_x12::parse(text.as_bytes()).expect("parses");
    map_document(
        &doc,
        &partner(),
        &master(),
        &|_, _, _| None,
        file,
        Timestamp::from_micros(1_795_000_000_000_000),
    )
}

fn map(i: &Interchange) -> Mapped {
    map_text(&i.text(), "f.x12")
}

/// Each 997: AK9 and its AK5s.
fn acks(out: &Mapped) -> Vec<(String, Vec<String>)> {
    out.acks
        .iter()
        .map(|a| {
            (
                a.status.code().to_string(),
                a.sets.iter().map(|s| s.status.code().to_string()).collect(),
            )
        })
        .collect()
}

fn ack(group: &str, sets: &[&str]) -> (String, Vec<String>) {
    (
        group.to_string(),
        sets.iter().map(|s| s.to_string()).collect(),
    )
}

fn ids(out: &Mapped) -> Vec<String> {
    out.events.iter().map(|e| e.id.clone()).collect()
}

/// `ACME/101/7/0001` of an event id `x12:ACME/101/7/0001/1/17`.
fn set_of(event_id: &str) -> String {
    let key = event_id.strip_prefix("x12:").expect("an X12 event id");
    key.split('/').take(4).collect::<Vec<_>>().join("/")
}

#[test]
fn a_clean_interchange_applies_every_line_and_says_so() {
    let out = map(&clean());
    assert!(out.exceptions.is_empty(), "{:#?}", out.exceptions);
    assert!(out.rejected.is_empty() && !out.refused());
    assert_eq!(out.sets_accepted, 3);
    assert_eq!(
        ids(&out),
        [
            "x12:ACME/101/7/0001/1/17",
            "x12:ACME/101/7/0001/2/17",
            "x12:ACME/101/7/0002/1/17",
            "x12:ACME/101/8/0001/1",
            "x12:ACME/101/8/0001/2",
        ]
    );
    assert_eq!(acks(&out), [ack("A", &["A", "A"]), ack("A", &["A"])]);
}

/// Checks an interchange-level rejection: nothing applied, one record naming `error`.
fn assert_interchange_rejected(i: &Interchange, error: &str) {
    let out = map(i);
    assert!(out.events.is_empty(), "{error}: {:#?}", out.events);
    assert!(out.orders.is_empty() && out.snapshots.is_empty() && out.returns.is_empty());
    assert_eq!(out.sets_accepted, 0);
    assert!(out.refused());
    assert_eq!(out.rejected.len(), 1, "{:#?}", out.rejected);
    assert_eq!(out.rejected[0].level, Level::Interchange);
    assert_eq!(out.rejected[0].control, "ACME/101");
    assert_eq!(out.exceptions.len(), 1, "{:#?}", out.exceptions);
    let e = &out.exceptions[0];
    assert_eq!(e.kind, ExceptionKind::SchemaViolation);
    assert_eq!(e.id, out.rejected[0].exception_id);
    assert!(e.reason.contains(error), "{error}: {}", e.reason);
    assert!(e.reason.contains("nothing in it applied"), "{}", e.reason);
    assert!(e.reason.contains("file f.x12"), "{}", e.reason);
    assert_eq!(e.entity, "file:acme/f.x12#ACME/101");
    let raw = e.raw.as_deref().expect("the interchange as read");
    assert!(raw.starts_with("ISA*00*"), "{raw}");
    assert!(raw.contains("W19*07*-3*EA**VN*SKU-4~"), "{raw}");
    assert_eq!(acks(&out), [ack("R", &["R", "R"]), ack("R", &["R"])]);
    assert!(out.acks.iter().all(|a| a.sets_accepted == 0));
}

#[test]
fn an_interchange_with_a_wrong_iea_or_isa_applies_nothing() {
    let mut i = clean();
    i.iea02 = Some("000000102".into());
    assert_interchange_rejected(
        &i,
        "segment 25 (IEA): IEA02 is 000000102 but ISA13 is 000000101",
    );
    let mut i = clean();
    i.iea01 = Some("3".into());
    assert_interchange_rejected(&i, "IEA01 says 3 functional groups, counted 2");
    let mut i = clean();
    i.iea = false;
    assert_interchange_rejected(
        &i,
        "segment 1 (ISA): the interchange 000000101 has no IEA (the input ends at segment 24)",
    );
    let mut i = clean();
    i.isa09 = "261399".into();
    assert_interchange_rejected(&i, "segment 1 (ISA): ISA09");
}

#[test]
fn a_group_with_a_wrong_ge_applies_none_of_its_sets_and_the_other_group_applies() {
    let cases: [(Change<Group>, &str); 3] = [
        (
            |g| g.ge01 = Some("3".into()),
            "segment 15 (GE): GE01 says 3 transaction sets, counted 2",
        ),
        (
            |g| g.ge02 = Some("9".into()),
            "segment 15 (GE): GE02 is 9 but GS06 (segment 2) is 7",
        ),
        (
            |g| g.ge = false,
            "segment 2 (GS): the functional group 7 has no GE (the GS at segment 15 came first)",
        ),
    ];
    for (change, error) in cases {
        let mut i = clean();
        change(&mut i.groups[0]);
        let out = map(&i);
        assert_eq!(
            ids(&out),
            ["x12:ACME/101/8/0001/1", "x12:ACME/101/8/0001/2"],
            "{error}: only the other group applies"
        );
        assert!(!out.refused());
        assert_eq!(out.sets_accepted, 1);
        assert_eq!(out.rejected.len(), 1, "{:#?}", out.rejected);
        assert_eq!(
            (out.rejected[0].level, out.rejected[0].control.as_str()),
            (Level::Group, "ACME/101/7")
        );
        assert_eq!(out.exceptions.len(), 1, "{:#?}", out.exceptions);
        let e = &out.exceptions[0];
        assert_eq!(e.kind, ExceptionKind::SchemaViolation);
        assert!(e.reason.contains(error), "{error}: {}", e.reason);
        assert_eq!(e.entity, "file:acme/f.x12#ACME/101/7");
        let raw = e.raw.as_deref().unwrap();
        assert!(raw.starts_with("GS*IB*ACME*CROSSDOCK"), "{raw}");
        assert!(raw.contains("SE*5*0002~"), "{raw}");
        assert_eq!(
            acks(&out),
            [ack("R", &["R", "R"]), ack("A", &["A"])],
            "{error}"
        );
    }
}

#[test]
fn a_set_with_a_wrong_se_applies_none_of_its_lines_and_its_siblings_apply() {
    let cases: [(Change<Set>, &str, &str); 3] = [
        (
            |s| s.se01 = Some("6".into()),
            "segment 9 (SE): SE01 says 6 segments, counted 7",
            "SE*6*0001~",
        ),
        (
            |s| s.se02 = Some("0009".into()),
            "segment 9 (SE): SE02 is \"0009\" but ST02 (segment 3) is \"0001\"",
            "SE*7*0009~",
        ),
        (
            |s| s.se = false,
            "segment 3 (ST): the transaction set 0001 has no SE (the ST at segment 9 came first)",
            "QTY*17*7*EA~",
        ),
    ];
    for (change, error, last) in cases {
        let mut i = clean();
        change(&mut i.groups[0].sets[0]);
        let out = map(&i);
        assert_eq!(
            ids(&out),
            [
                "x12:ACME/101/7/0002/1/17",
                "x12:ACME/101/8/0001/1",
                "x12:ACME/101/8/0001/2"
            ],
            "{error}: the set's lines do not apply, its siblings' do"
        );
        assert_eq!(out.sets_accepted, 2);
        assert_eq!(out.rejected.len(), 1, "{:#?}", out.rejected);
        assert_eq!(
            (out.rejected[0].level, out.rejected[0].control.as_str()),
            (Level::Set, "ACME/101/7/0001")
        );
        let e = &out.exceptions[0];
        assert_eq!(out.exceptions.len(), 1, "{:#?}", out.exceptions);
        assert_eq!(e.kind, ExceptionKind::SchemaViolation);
        assert!(e.reason.contains(error), "{error}: {}", e.reason);
        assert_eq!(e.entity, "file:acme/f.x12#ACME/101/7/0001");
        let raw = e.raw.as_deref().unwrap();
        assert!(raw.starts_with("ST*846*0001~\nBIA*"), "{raw}");
        assert!(raw.ends_with(&format!("{last}\n")), "{raw}");
        assert_eq!(
            acks(&out),
            [ack("P", &["R", "A"]), ack("A", &["A"])],
            "{error}"
        );
    }
}

#[test]
fn an_unsupported_or_unreadable_set_is_rejected_in_the_997_too() {
    let mut i = clean();
    i.groups[0].sets[1] = set("812", "0002", &["BCD*20261123*CM1"]);
    let out = map(&i);
    assert_eq!(acks(&out), [ack("P", &["A", "R"]), ack("A", &["A"])]);
    assert_eq!(out.rejected.len(), 1);
    assert!(
        out.exceptions[0]
            .reason
            .contains("transaction set 812 is not supported"),
        "{}",
        out.exceptions[0].reason
    );
    // An 846 without its BIA cannot be read.
    let mut i = clean();
    i.groups[0].sets[1].body.remove(0);
    let out = map(&i);
    assert_eq!(acks(&out), [ack("P", &["A", "R"]), ack("A", &["A"])]);
    assert!(!ids(&out).iter().any(|id| id.contains("/7/0002/")));
}

#[test]
fn a_corrected_resend_applies_each_line_exactly_once() {
    // An idempotent store of applied event ids, as the engine keeps.
    let mut applied: HashSet<String> = HashSet::new();
    let mut apply = |out: &Mapped| -> usize {
        out.events
            .iter()
            .filter(|e| applied.insert(e.id.clone()))
            .count()
    };
    let mut wrong_se = clean();
    wrong_se.groups[0].sets[0].se01 = Some("6".into());
    let mut wrong_iea = clean();
    wrong_iea.iea02 = Some("000000102".into());
    assert_eq!(apply(&map_text(&wrong_iea.text(), "a.x12")), 0);
    assert_eq!(apply(&map_text(&wrong_se.text(), "b.x12")), 3);
    // The partner corrects and resends: the lines that were rejected apply now, once; the
    // rest are repeats.
    let resend = map_text(&clean().text(), "c.x12");
    assert!(resend.exceptions.is_empty());
    assert_eq!(apply(&resend), 2);
    assert_eq!(apply(&resend), 0);
    let expected: HashSet<String> = ids(&map(&clean())).into_iter().collect();
    assert_eq!(applied, expected);
}

#[test]
fn a_line_failing_the_event_check_is_an_exception_on_its_segment_and_the_rest_applies() {
    let mut i = clean();
    i.groups[0].sets[0].body = [
        "BIA*00*MM*INV1*20261123",
        "LIN*1*VN*SKU-1",
        "QTY*17*-5*EA",
        "LIN*2*VN*SKU-2",
        "QTY*17*9223372036854775807*EA",
        "LIN*3*VN*SKU-3",
        "QTY*17*1000000000001*EA",
        "LIN*4*VN*SKU-4",
        "QTY*17*12*EA",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    i.groups[1].sets[0].body = [
        "W15*20261123*ADJ1",
        "LX*1",
        "W19*AV*-9223372036854775808*EA**VN*SKU-1",
        "LX*2",
        "W19*07*-9223372036854775808*EA**VN*SKU-4",
        "LX*3",
        "W19*07*99999999999999999999*EA**VN*SKU-4",
        "LX*4",
        "W19*07*-3*EA**VN*SKU-2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = map(&i);
    assert_eq!(
        ids(&out),
        [
            "x12:ACME/101/7/0001/4/17",
            "x12:ACME/101/7/0002/1/17",
            "x12:ACME/101/8/0001/4"
        ],
        "{:#?}",
        out.exceptions
    );
    for e in &out.events {
        e.data.validate().expect("every event passes the check");
    }
    let refused: Vec<(Option<&str>, &str)> = out
        .exceptions
        .iter()
        .map(|e| (e.raw.as_deref(), e.reason.as_str()))
        .collect();
    let expect = [
        ("QTY*17*-5*EA~", "data.qty: must not be negative, got -5"),
        (
            "QTY*17*9223372036854775807*EA~",
            "data.qty: must be at most 1000000000000",
        ),
        (
            "QTY*17*1000000000001*EA~",
            "data.qty: must be at most 1000000000000",
        ),
        (
            "W19*AV*-9223372036854775808*EA**VN*SKU-1~",
            "inventory.status_changed.v1 data.qty",
        ),
        (
            "W19*07*-9223372036854775808*EA**VN*SKU-4~",
            "data.delta: must be within ±1000000000000",
        ),
        (
            "W19*07*99999999999999999999*EA**VN*SKU-4~",
            "quantity 99999999999999999999 is out of range",
        ),
    ];
    assert_eq!(refused.len(), expect.len(), "{refused:#?}");
    for ((raw, reason), (want_raw, want)) in refused.iter().zip(expect) {
        assert_eq!(*raw, Some(want_raw));
        assert!(reason.contains(want), "{reason} should say {want}");
    }
    assert!(
        out.exceptions
            .iter()
            .all(|e| e.kind == ExceptionKind::SchemaViolation)
    );
    // The sets are accepted with errors, each refused line an AK3 naming its segment.
    assert_eq!(acks(&out), [ack("E", &["E", "A"]), ack("E", &["E"])]);
    let noted: Vec<(&str, u32)> = out.acks[0].sets[0]
        .segment_errors
        .iter()
        .map(|e| (e.segment_id.as_str(), e.position))
        .collect();
    assert_eq!(noted, [("QTY", 4), ("QTY", 6), ("QTY", 8)]);
    assert!(out.rejected.is_empty());
}

#[test]
fn an_order_line_failing_the_check_is_dropped_and_the_order_keeps_the_rest() {
    let mut i = clean();
    i.groups = vec![Group {
        functional: "PO",
        gs06: 9,
        sets: vec![set(
            "850",
            "0001",
            &[
                "BEG*00*SA*PO-9**20261123",
                "PO1*1*-5*EA*9.5**VN*SKU-1",
                "PO1*2*4*EA*3**VN*SKU-2",
                "PO1*3*1000000000001*EA*3**VN*SKU-3",
                "CTT*3",
            ],
        )],
        ge01: None,
        ge02: None,
        ge: true,
    }];
    i.iea01 = Some("1".into());
    let out = map(&i);
    assert_eq!(out.orders.len(), 1);
    let lines: Vec<(String, i64)> = out.orders[0]
        .lines
        .iter()
        .map(|l| (l.item.to_string(), l.qty))
        .collect();
    assert_eq!(lines, [("SKU-2".to_string(), 4)]);
    let raw: Vec<Option<&str>> = out.exceptions.iter().map(|e| e.raw.as_deref()).collect();
    assert_eq!(
        raw,
        [
            Some("PO1*1*-5*EA*9.5**VN*SKU-1~"),
            Some("PO1*3*1000000000001*EA*3**VN*SKU-3~")
        ]
    );
    let p = partner();
    out.orders[0]
        .captured(&p, p.channel.clone().unwrap())
        .validate()
        .expect("the order the hub captures passes the check");
    assert_eq!(acks(&out), [ack("E", &["E"])]);
}

/// A change to one count or control number of the clean interchange.
#[derive(Debug, Clone)]
enum Mutation {
    Se01 { group: usize, set: usize, delta: i8 },
    Se02 { group: usize, set: usize },
    NoSe { group: usize, set: usize },
    Ge01 { group: usize, delta: i8 },
    Ge02 { group: usize },
    NoGe { group: usize },
    Iea01 { delta: i8 },
    Iea02,
    NoIea,
    Isa09,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let set = (0usize..2, 0usize..2);
    let delta = prop_oneof![-3i8..0, 1i8..4];
    prop_oneof![
        (set.clone(), delta.clone()).prop_map(|((group, set), delta)| Mutation::Se01 {
            group,
            set,
            delta
        }),
        set.clone()
            .prop_map(|(group, set)| Mutation::Se02 { group, set }),
        set.prop_map(|(group, set)| Mutation::NoSe { group, set }),
        (0usize..2, delta.clone()).prop_map(|(group, delta)| Mutation::Ge01 { group, delta }),
        (0usize..2).prop_map(|group| Mutation::Ge02 { group }),
        (0usize..2).prop_map(|group| Mutation::NoGe { group }),
        delta.prop_map(|delta| Mutation::Iea01 { delta }),
        Just(Mutation::Iea02),
        Just(Mutation::NoIea),
        Just(Mutation::Isa09),
    ]
}

fn shifted(n: usize, delta: i8) -> String {
    (n as i64 + i64::from(delta)).max(0).to_string()
}

impl Mutation {
    fn apply(&self, i: &mut Interchange) {
        let groups = i.groups.len();
        match *self {
            Mutation::Se01 { group, set, delta } => {
                let g = &mut i.groups[group % groups];
                let n = g.sets.len();
                let s = &mut g.sets[set % n];
                s.se01 = Some(shifted(s.body.len() + 2, delta));
            }
            Mutation::Se02 { group, set } => {
                let g = &mut i.groups[group % groups];
                let n = g.sets.len();
                g.sets[set % n].se02 = Some("9999".into());
            }
            Mutation::NoSe { group, set } => {
                let g = &mut i.groups[group % groups];
                let n = g.sets.len();
                g.sets[set % n].se = false;
            }
            Mutation::Ge01 { group, delta } => {
                let g = &mut i.groups[group % groups];
                g.ge01 = Some(shifted(g.sets.len(), delta));
            }
            Mutation::Ge02 { group } => i.groups[group % groups].ge02 = Some("999".into()),
            Mutation::NoGe { group } => i.groups[group % groups].ge = false,
            Mutation::Iea01 { delta } => i.iea01 = Some(shifted(groups, delta)),
            Mutation::Iea02 => i.iea02 = Some("999999999".into()),
            Mutation::NoIea => i.iea = false,
            Mutation::Isa09 => i.isa09 = "26AB23".into(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
    ))]

    /// Whatever counts and control numbers are wrong: a rejected interchange yields nothing,
    /// every event comes from a set its 997 accepts, and a set the 997 accepts yields exactly
    /// the events it yields when nothing is wrong.
    #[test]
    fn what_the_997_accepts_is_exactly_what_applies(
        mutations in proptest::collection::vec(mutation(), 1..4)
    ) {
        let mut i = clean();
        for m in &mutations {
            m.apply(&mut i);
        }
        let text = i.text();
        let doc = crossdock_x12::parse(text.as_bytes()).expect("parses");
        let out = map_text(&text, "f.x12");
        let interchange_rejected = !doc.interchanges[0].envelope_errors(&doc.diagnostics).is_empty();
        if interchange_rejected {
            prop_assert!(out.events.is_empty(), "{text}\n{:#?}", out.events);
            prop_assert!(out.orders.is_empty() && out.snapshots.is_empty());
            prop_assert_eq!(out.sets_accepted, 0);
            prop_assert!(out.acks.iter().all(|a| a.status.code() == "R" && a.sets_accepted == 0));
            prop_assert!(out.acks.iter().flat_map(|a| &a.sets).all(|s| s.status.code() == "R"));
            prop_assert_eq!(out.rejected.len(), 1);
            prop_assert_eq!(out.rejected[0].level, Level::Interchange);
        }
        // The sets each 997 accepts, by `sender/ISA13/GS06/ST02`.
        let mut accepted: BTreeSet<String> = BTreeSet::new();
        for a in &out.acks {
            for s in &a.sets {
                if s.status.is_accepted() {
                    accepted.insert(format!("ACME/101/{}/{}", a.group_control_number, s.control_number));
                }
            }
        }
        prop_assert_eq!(accepted.len(), out.sets_accepted, "{}", text);
        let from: BTreeSet<String> = out.events.iter().map(|e| set_of(&e.id)).collect();
        prop_assert!(from.is_subset(&accepted), "{text}\nevents from {from:?}, accepted {accepted:?}");
        // Exactly the clean events of the accepted sets.
        let clean_out = map(&clean());
        let expected: Vec<String> = ids(&clean_out)
            .into_iter()
            .filter(|id| accepted.contains(&set_of(id)))
            .collect();
        prop_assert_eq!(ids(&out), expected, "{}", text);
        // Something rejected is said once, by a schema_violation naming the file.
        prop_assert_eq!(out.refused(), accepted.is_empty() && !out.rejected.is_empty());
        prop_assert_eq!(out.rejected.len(), out.exceptions.len());
        for e in &out.exceptions {
            prop_assert_eq!(e.kind, ExceptionKind::SchemaViolation);
            prop_assert!(e.entity.starts_with("file:acme/f.x12#ACME/101"), "{}", e.entity);
            prop_assert!(e.raw.is_some());
        }
        // The events of an applied file pass the check every door makes.
        for e in &out.events {
            prop_assert!(matches!(e.data, EventData::Counted(_) | EventData::StatusChanged(_) | EventData::Adjusted(_)));
            prop_assert!(e.data.validate().is_ok());
        }
    }
}
