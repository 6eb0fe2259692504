//! Prints the sets and diagnostics of each file given:
//! `cargo run -p crossdock-x12 --example x12dump FILE...`
fn main() {
    for path in std::env::args().skip(1) {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                println!("{path}: cannot read: {e}");
                continue;
            }
        };
        match crossdock_x12::parse(&bytes) {
            Err(e) => println!("{path}: FATAL {e}"),
            Ok(doc) => {
                let mut diags = doc.diagnostics.clone();
                let mut sets = Vec::new();
                for (_, set) in doc.sets() {
                    let typed = crossdock_x12::TypedSet::read(set, &mut diags);
                    sets.push(format!(
                        "{}{}",
                        set.id,
                        if typed.is_some() { "" } else { "(untyped)" }
                    ));
                }
                println!("{path}: sets {sets:?}");
                for d in &diags {
                    println!("    {:?} {:?} {}", d.severity, d.code, d);
                }
            }
        }
    }
}
