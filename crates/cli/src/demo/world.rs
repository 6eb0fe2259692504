//! The distributor the demo runs: three distribution centres with their WMS, the channels and
//! what each sells from, the item master, the access tokens, and the hub's config generated as
//! TOML text (checked afterwards by the same loader as `crossdock serve`).

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// A distribution centre and the warehouse system that runs it.
#[derive(Debug)]
pub struct Dc {
    pub id: &'static str,
    /// The `[[sources]]` id of its WMS.
    pub wms: &'static str,
    /// Ship-to regions it serves first.
    pub regions: &'static [&'static str],
    /// Run by a third-party logistics provider whose feed is sequenced (and, during the run,
    /// sends duplicates and events out of order).
    pub third_party: bool,
}

pub const DCS: [Dc; 3] = [
    Dc {
        id: "DC-EAST",
        wms: "wms-east",
        regions: &["NY", "NJ", "MA", "PA", "GA", "FL"],
        third_party: false,
    },
    Dc {
        id: "DC-CENTRAL",
        wms: "wms-central",
        regions: &["TX", "IL", "OH", "MN", "CO"],
        third_party: true,
    },
    Dc {
        id: "DC-WEST",
        wms: "wms-west",
        regions: &["CA", "WA", "OR", "AZ", "NV"],
        third_party: false,
    },
];

/// Index into [`DCS`] of a location id.
pub fn dc_index(location: &str) -> Option<usize> {
    DCS.iter().position(|d| d.id == location)
}

/// Every ship-to region, for customers.
pub fn regions() -> Vec<&'static str> {
    DCS.iter().flat_map(|d| d.regions.iter().copied()).collect()
}

/// Where the demo's customers buy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// A Shopify store: orders arrive as signed `orders/create` webhooks.
    Shopify,
    /// Amazon (SP-API listings): orders hold stock through reservations, then commit.
    Amazon,
    /// The B2B portal, a WooCommerce store that shows stock to business customers and places
    /// their orders through `POST /v1/orders` (with the ERP's credit check).
    B2b,
    /// A retail chain trading by EDI: 850 purchase orders dropped in its partner folder.
    Retail,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Shopify,
        Channel::Amazon,
        Channel::B2b,
        Channel::Retail,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Channel::Shopify => "shopify",
            Channel::Amazon => "amazon",
            Channel::B2b => "b2b",
            Channel::Retail => "retail",
        }
    }

    /// The locations it sells from. The Shopify store and the retail partner sell from disjoint
    /// DCs: a retail 850 allocates stock when the hub picks the file up, outside the order
    /// sequence the demo keeps per item (see `channels.rs`), so it must not touch stock the
    /// Shopify storefront shows.
    pub fn locations(self) -> &'static [&'static str] {
        match self {
            Channel::Shopify => &["DC-CENTRAL", "DC-WEST"],
            Channel::Amazon | Channel::B2b => &["DC-EAST", "DC-CENTRAL", "DC-WEST"],
            Channel::Retail => &["DC-EAST"],
        }
    }
}

/// The EDI partner: a retail chain.
pub const PARTNER: &str = "mart";
pub const PARTNER_ISA: &str = "MARTRETAIL";
/// The hub's own interchange id (the partner default).
pub const HUB_ISA: &str = "CROSSDOCK";

/// One item of the master.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub description: String,
    /// GTIN-12 (UPC-A), with its check digit.
    pub upc: String,
    /// Shopify inventory item id.
    pub shopify_id: u64,
    /// WooCommerce product id.
    pub woo_id: u64,
    /// The retail partner's own item number (its crosswalk).
    pub partner_code: String,
    /// Unit price in cents, for order amounts.
    pub price_cents: i64,
}

/// `n` items, `SKU-0001` ..; item `i` is the `i`-th most popular in the built-in demand.
pub fn items(n: usize) -> Vec<Item> {
    const KINDS: [&str; 8] = [
        "Cordless drill",
        "Work gloves",
        "LED work light",
        "Tape measure",
        "Socket set",
        "Safety glasses",
        "Extension cord",
        "Utility knife",
    ];
    (1..=n)
        .map(|i| Item {
            id: format!("SKU-{i:04}"),
            description: format!("{} model {}", KINDS[i % KINDS.len()], 100 + i),
            upc: upc(i as u64),
            shopify_id: 44_000_000 + i as u64,
            woo_id: 500 + i as u64,
            partner_code: format!("MRT{:06}", 310_000 + i),
            price_cents: 499 + ((i * 7_919) % 20_000) as i64,
        })
        .collect()
}

/// A UPC-A under the GS1 demo prefix 0614141: 11 digits and the check digit.
fn upc(n: u64) -> String {
    let body = format!("0614141{:04}", n % 10_000);
    let sum: u32 = body
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// The bearer tokens: one per system, each with only the scopes that system needs. Random
/// (UUID v4 from the operating system's generator), never derived from `--seed`.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Printed for the person at the dashboard.
    pub admin: String,
    /// The ERP: purchase orders (admin) and its own events.
    pub erp: String,
    /// One per WMS, in [`DCS`] order.
    pub wms: [String; 3],
    pub tms: String,
    /// Storefronts: reservations and orders, availability reads.
    pub storefront: String,
}

impl Tokens {
    pub fn generate() -> Tokens {
        let t = || format!("cdx_{}", uuid::Uuid::new_v4().simple());
        Tokens {
            admin: t(),
            erp: t(),
            wms: [t(), t(), t()],
            tms: t(),
            storefront: t(),
        }
    }
}

/// Where the simulators listen and the credentials they expect.
#[derive(Debug, Clone)]
pub struct Targets {
    pub shopify_url: String,
    pub shopify_location: u64,
    pub shopify_access_token: String,
    /// Signs the store's webhooks to the hub (the app's client secret).
    pub shopify_webhook_secret: String,
    pub amazon_url: String,
    pub amazon_lwa_url: String,
    pub amazon_seller: String,
    pub amazon_marketplace: String,
    pub amazon_refresh_token: String,
    pub amazon_client_id: String,
    pub amazon_client_secret: String,
    pub woo_url: String,
    pub woo_key: String,
    pub woo_secret: String,
    /// The ERP's webhook receiver (order, invoice and PO postings).
    pub erp_url: String,
    /// The ERP's credit check.
    pub credit_url: String,
    /// Each WMS's release receiver, in [`DCS`] order.
    pub wms_urls: [String; 3],
    /// Signs the hub's webhooks to the ERP and the WMS.
    pub webhook_secret: String,
}

/// Writes the config, the item master, the crosswalks and the secrets into `dir`; returns the
/// config's path. Secrets go into `dir/secrets/`, readable by the owner only.
pub fn write(
    dir: &Path,
    listen: &str,
    items: &[Item],
    tokens: &Tokens,
    targets: &Targets,
    recon_interval_s: u64,
    partitions: u32,
) -> io::Result<PathBuf> {
    let mut csv = String::from("item,description,gtin\n");
    for i in items {
        writeln!(csv, "{},{},{}", i.id, i.description, i.upc).expect("string write");
    }
    std::fs::write(dir.join("items.csv"), csv)?;
    let crosswalk = |f: &dyn Fn(&Item) -> String| {
        let mut text = String::from("item,external_id\n");
        for i in items {
            writeln!(text, "{},{}", i.id, f(i)).expect("string write");
        }
        text
    };
    std::fs::write(
        dir.join("shopify-items.csv"),
        crosswalk(&|i| i.shopify_id.to_string()),
    )?;
    std::fs::write(
        dir.join("woo-items.csv"),
        crosswalk(&|i| i.woo_id.to_string()),
    )?;
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets)?;
    let secret_files: [(&str, &str); 15] = [
        ("admin-token", &tokens.admin),
        ("erp-token", &tokens.erp),
        ("wms-east-token", &tokens.wms[0]),
        ("wms-central-token", &tokens.wms[1]),
        ("wms-west-token", &tokens.wms[2]),
        ("tms-token", &tokens.tms),
        ("storefront-token", &tokens.storefront),
        ("shopify-access-token", &targets.shopify_access_token),
        ("shopify-webhook-secret", &targets.shopify_webhook_secret),
        ("amazon-refresh-token", &targets.amazon_refresh_token),
        ("amazon-client-id", &targets.amazon_client_id),
        ("amazon-client-secret", &targets.amazon_client_secret),
        ("woo-consumer-key", &targets.woo_key),
        ("woo-consumer-secret", &targets.woo_secret),
        ("webhook-signing-secret", &targets.webhook_secret),
    ];
    for (name, value) in secret_files {
        write_secret(&secrets.join(name), value)?;
    }
    let path = dir.join("crossdock.toml");
    std::fs::write(
        &path,
        config_text(listen, targets, recon_interval_s, partitions),
    )?;
    Ok(path)
}

fn write_secret(path: &Path, value: &str) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(value.as_bytes())
}

/// The hub's config. Paths are relative to the config's folder; every secret is a file under
/// `secrets/`.
pub fn config_text(
    listen: &str,
    targets: &Targets,
    recon_interval_s: u64,
    partitions: u32,
) -> String {
    let mut c = String::new();
    let w = &mut c;
    let line = |w: &mut String, s: &str| {
        w.push_str(s);
        w.push('\n');
    };
    line(
        w,
        "# Generated by `crossdock demo`: a distributor with three DCs, four channels, an ERP,\n\
         # a transport system and an EDI retail partner, all simulated on loopback.",
    );
    line(w, "[server]");
    line(w, &format!("listen = \"{listen}\""));
    line(w, "data_dir = \"data\"\n");
    line(w, &format!("[engine]\npartitions = {partitions}\n"));
    line(w, "[master]\nitems_file = \"items.csv\"\n");
    line(w, "[resequencer]\ngap_wait_s = 30\n");
    for dc in &DCS {
        let regions: Vec<String> = dc.regions.iter().map(|r| format!("\"{r}\"")).collect();
        line(
            w,
            &format!(
                "[[locations]]\nid = \"{}\"\nregions = [{}]\n",
                dc.id,
                regions.join(", ")
            ),
        );
    }
    line(
        w,
        "[[sources]]\nid = \"erp\"\n[[sources.owns]]\ntypes = [\"supply.*\"]\n",
    );
    for dc in &DCS {
        line(
            w,
            &format!(
                "[[sources]]\nid = \"{}\"\nsequenced = {}\n[[sources.owns]]\ntypes = [\"inventory.*\", \"return.*\"]\nlocations = [\"{}\"]\n",
                dc.wms, dc.third_party, dc.id
            ),
        );
    }
    line(
        w,
        "[[sources]]\nid = \"tms\"                 # the carrier confirms what left each dock\n[[sources.owns]]\ntypes = [\"inventory.shipped.v1\"]\n",
    );
    line(w, &format!("[[sources]]\nid = \"{PARTNER}-edi\"\n"));
    for ch in Channel::ALL {
        let locs: Vec<String> = ch.locations().iter().map(|l| format!("\"{l}\"")).collect();
        let policy = match ch {
            Channel::Shopify => "buffer = 1\nlow_stock = 3",
            Channel::Amazon => "buffer = 1\nlow_stock = 3",
            Channel::B2b => "low_stock = 10",
            Channel::Retail => "low_stock = 12",
        };
        line(
            w,
            &format!(
                "[[channels]]\nid = \"{}\"\nlocations = [{}]\n{policy}\n",
                ch.id(),
                locs.join(", ")
            ),
        );
    }
    let token = |w: &mut String, name: &str, scopes: &str| {
        line(
            w,
            &format!(
                "[[tokens]]\nname = \"{name}\"\nsecret_file = \"secrets/{name}-token\"\nscopes = [{scopes}]\n"
            ),
        );
    };
    token(w, "admin", "\"admin\"");
    token(w, "erp", "\"admin\"");
    for dc in &DCS {
        token(w, dc.wms, &format!("\"ingest:{}\", \"query\"", dc.wms));
    }
    token(w, "tms", "\"ingest:tms\"");
    token(w, "storefront", "\"reserve\", \"query\"");

    // A quick breaker and short backoff, so an outage of a few seconds shows both.
    let resilience = "breaker = { failures = 3, open_ms = 1000, open_max_ms = 4000 }\n\
                      retry = { base_ms = 100, cap_ms = 2000 }";
    line(
        w,
        &format!(
            "[[endpoints]]\nchannel = \"shopify\"\nkind = \"shopify\"\ncrosswalk = \"shopify-items.csv\"\n\
             secrets_file = {{ access_token = \"secrets/shopify-access-token\", webhook_secret = \"secrets/shopify-webhook-secret\" }}\n\
             # Half of Shopify Standard's 100 points/s: publishing alone could spend it all and\n\
             # starve the reconciliation's level reads (753 points a page) of the same bucket.\n\
             rate = {{ kind = \"cost\", rate = 50, burst = 500 }}\n{resilience}\n\
             [endpoints.shopify]\nshop_url = \"{}\"\nlocation_id = \"gid://shopify/Location/{}\"\ntimeout_ms = 2000\n",
            targets.shopify_url, targets.shopify_location
        ),
    );
    line(
        w,
        &format!(
            "[[endpoints]]\nchannel = \"amazon\"\nkind = \"amazon\"\n\
             secrets_file = {{ refresh_token = \"secrets/amazon-refresh-token\", client_id = \"secrets/amazon-client-id\", client_secret = \"secrets/amazon-client-secret\" }}\n\
             rate = {{ kind = \"token\", rate = 5, burst = 5 }}        # patchListingsItem's usage plan\n{resilience}\n\
             [endpoints.amazon]\nendpoint = \"{}\"\nlwa_url = \"{}\"\nseller_id = \"{}\"\nmarketplace_id = \"{}\"\n\
             feed_threshold = 40                                     # a backlog goes as one JSON_LISTINGS_FEED\nfeed_poll_ms = 200\ntimeout_ms = 2000\n",
            targets.amazon_url,
            targets.amazon_lwa_url,
            targets.amazon_seller,
            targets.amazon_marketplace
        ),
    );
    line(
        w,
        &format!(
            "[[endpoints]]\nchannel = \"b2b\"\nkind = \"woocommerce\"\ncrosswalk = \"woo-items.csv\"\n\
             secrets_file = {{ consumer_key = \"secrets/woo-consumer-key\", consumer_secret = \"secrets/woo-consumer-secret\" }}\n\
             rate = {{ kind = \"token\", rate = 5, burst = 10 }}\n{resilience}\n\
             [endpoints.woocommerce]\nurl = \"{}\"\ntimeout_ms = 2000\n",
            targets.woo_url
        ),
    );
    let hook = |w: &mut String, name: &str, url: &str| {
        line(
            w,
            &format!(
                "[[endpoints]]\nname = \"{name}\"\nkind = \"webhook\"\n\
                 secrets_file = {{ signing_secret = \"secrets/webhook-signing-secret\" }}\n\
                 rate = {{ kind = \"token\", rate = 500, burst = 500 }}\n\
                 [endpoints.webhook]\nurl = \"{url}\"\n"
            ),
        );
    };
    hook(w, "erp", &format!("{}/crossdock/postings", targets.erp_url));
    for (dc, url) in DCS.iter().zip(&targets.wms_urls) {
        hook(
            w,
            &format!("{}-releases", dc.wms),
            &format!("{url}/releases"),
        );
    }
    line(
        w,
        &format!(
            "[[partners]]\nid = \"{PARTNER}\"\nsource = \"{PARTNER}-edi\"\nisa_id = \"{PARTNER_ISA}\"\n\
             location = \"DC-EAST\"\nchannel = \"retail\"\npoll_ms = 100\nsettle_ms = 0\n"
        ),
    );
    line(
        w,
        &format!(
            "[workflows]\nerp_endpoint = \"erp\"\n[workflows.credit]\nurl = \"{}\"\ntimeout_ms = 500\n\
             fallback = \"approve_up_to\"\napprove_up_to_minor = 500000\n",
            targets.credit_url
        ),
    );
    for dc in &DCS {
        line(
            w,
            &format!(
                "[[workflows.warehouses]]\nlocation = \"{}\"\nendpoint = \"{}-releases\"\n",
                dc.id, dc.wms
            ),
        );
    }
    line(
        w,
        "[[workflows.sourcing]]\nchannel = \"b2b\"\nmax_splits = 2\nbackorder = false       # the portal refuses what it cannot promise\n",
    );
    line(
        w,
        &format!(
            "[[reconciliation.sources]]\nname = \"shopify-levels\"\nkind = \"channel\"\nchannel = \"shopify\"\n\
             interval_s = {recon_interval_s}\n[reconciliation.sources.actions]\nquantity_variance = \"auto_correct\"\n"
        ),
    );
    line(
        w,
        "[[slo]]\nname = \"ingest-1s\"\nflow = \"occurred_to_committed\"\nthreshold_ms = 1000\nobjective = 0.99\n",
    );
    line(
        w,
        "[[slo]]\nname = \"channel-visible-5s\"\nflow = \"committed_to_delivered\"\nthreshold_ms = 5000\nobjective = 0.99",
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upcs_carry_a_valid_check_digit() {
        // 036000291452 is a well-known valid UPC-A; the same rule must accept ours.
        let check = |code: &str| {
            let d: Vec<u32> = code.bytes().map(|b| u32::from(b - b'0')).collect();
            let sum: u32 = d[..11]
                .iter()
                .enumerate()
                .map(|(i, x)| x * if i % 2 == 0 { 3 } else { 1 })
                .sum();
            (10 - sum % 10) % 10 == d[11]
        };
        assert!(check("036000291452"));
        for i in items(50) {
            assert_eq!(i.upc.len(), 12);
            assert!(check(&i.upc), "{}", i.upc);
        }
        assert_ne!(items(2)[0].upc, items(2)[1].upc);
    }

    #[test]
    fn shopify_and_retail_never_share_a_location() {
        for l in Channel::Shopify.locations() {
            assert!(!Channel::Retail.locations().contains(l));
        }
    }
}
