//! Reading a channel's stock back ([`StockReader`]) against the simulators: every level the
//! channel shows, over several pages, mapped to items or reported as unmapped; failures
//! classified; a merchant's edit and a lost write both visible to the reader.

use crossdock_adapters::{ChannelLevel, Crosswalk, PullError, StockPull, StockReader};
use crossdock_delivery::{MsgResult, Target};
use serde_json::json;

use crate::stub::availability;

fn level(item: &str, quantity: i64) -> ChannelLevel {
    ChannelLevel {
        item: item.into(),
        quantity,
    }
}

/// The level the pull shows for `item`.
fn shown(pull: &StockPull, item: &str) -> Option<i64> {
    pull.levels
        .iter()
        .find(|l| l.item == item)
        .map(|l| l.quantity)
}

fn assert_retryable(result: Result<StockPull, PullError>, says: &[&str]) {
    let error = result.expect_err("the read fails");
    assert!(error.retryable, "{error}");
    for part in says {
        assert!(error.message.contains(part), "{part:?} not in {error}");
    }
}

fn assert_permanent(result: Result<StockPull, PullError>, says: &[&str]) {
    let error = result.expect_err("the read fails");
    assert!(!error.retryable, "{error}");
    for part in says {
        assert!(error.message.contains(part), "{part:?} not in {error}");
    }
}

mod shopify {
    use super::*;
    use crossdock_adapters::shopify::{ShopifyConfig, ShopifyPublisher};
    use crossdock_sim::{ShopifySim, ShopifyThrottle};

    fn publisher(
        sim: &ShopifySim,
        token: &str,
        location: &str,
        walk: Crosswalk,
    ) -> ShopifyPublisher {
        ShopifyPublisher::new(
            ShopifyConfig {
                shop_url: sim.url().into(),
                api_version: "2026-01".into(),
                location_id: location.into(),
                timeout_ms: 5_000,
                mutation_cost: 10.0,
            },
            token.into(),
            walk,
        )
        .unwrap()
    }

    fn walk() -> Crosswalk {
        Crosswalk::from_pairs([
            ("SKU-A", "1001"),
            ("SKU-B", "gid://shopify/InventoryItem/1002"),
            ("SKU-C", "1003"),
            ("SKU-D", "1004"),
            // Not stocked at the shop: not a level.
            ("SKU-Z", "1999"),
        ])
        .unwrap()
    }

    async fn sim(config: crossdock_sim::ShopifyConfig) -> ShopifySim {
        ShopifySim::start(config).await.unwrap()
    }

    fn level_pages(sim: &ShopifySim) -> usize {
        sim.requests()
            .iter()
            .filter(|r| r.path.ends_with("/graphql.json"))
            .count()
    }

    #[tokio::test]
    async fn reads_every_level_over_several_pages_in_both_id_forms() {
        let sim = sim(crossdock_sim::ShopifyConfig {
            levels_page_max: 2,
            throttle: ShopifyThrottle::PLUS,
            ..Default::default()
        })
        .await;
        sim.insert_item(1001, 5);
        sim.insert_item(1002, 0);
        sim.insert_item(1003, 12);
        sim.insert_item(1004, -2);
        sim.insert_item(1005, 7);
        let p = publisher(&sim, &sim.config().access_token, "1", walk());

        let pull = p.read_stock().await.unwrap();
        assert_eq!(
            pull.levels,
            vec![
                level("SKU-A", 5),
                level("SKU-B", 0),
                level("SKU-C", 12),
                level("SKU-D", -2)
            ]
        );
        assert_eq!(pull.unmapped, vec!["gid://shopify/InventoryItem/1005"]);
        assert_eq!(level_pages(&sim), 3, "5 levels, 2 per page");
        assert_eq!(sim.stats().rate_limit_violations, 0);

        // The location in gid form reads the same.
        let by_gid = publisher(
            &sim,
            &sim.config().access_token,
            "gid://shopify/Location/1",
            walk(),
        );
        assert_eq!(by_gid.read_stock().await.unwrap(), pull);
    }

    #[tokio::test]
    async fn full_pages_wait_for_the_cost_bucket_instead_of_being_throttled() {
        // 1000 points, 1000 back per second: a full page (753 points requested) leaves 247,
        // so the reader waits about half a second before each next page.
        let sim = sim(crossdock_sim::ShopifyConfig {
            throttle: ShopifyThrottle {
                maximum_available: 1000.0,
                restore_rate: 1000.0,
            },
            ..Default::default()
        })
        .await;
        for id in 1..=600 {
            sim.insert_item(id, id as i64);
        }
        let walk =
            Crosswalk::from_pairs((1..=600).map(|id| (format!("I{id}"), id.to_string()))).unwrap();
        let p = publisher(&sim, &sim.config().access_token, "1", walk);
        let pull = p.read_stock().await.unwrap();
        assert_eq!(pull.levels.len(), 600);
        assert_eq!(shown(&pull, "I600"), Some(600));
        assert!(pull.unmapped.is_empty());
        assert_eq!(level_pages(&sim), 3);
        assert_eq!(sim.stats().rate_limit_violations, 0);
    }

    #[tokio::test]
    async fn throttled_and_5xx_reads_are_retryable_and_refusals_permanent() {
        // One point back per second: after a full page the next cannot be waited for.
        let sim = sim(crossdock_sim::ShopifyConfig {
            throttle: ShopifyThrottle {
                maximum_available: 1000.0,
                restore_rate: 1.0,
            },
            ..Default::default()
        })
        .await;
        for id in 1..=300 {
            sim.insert_item(id, 1);
        }
        let p = publisher(&sim, &sim.config().access_token, "1", walk());
        assert_retryable(p.read_stock().await, &["THROTTLED", "page 2", "HTTP 429"]);
        assert_eq!(sim.stats().rate_limit_violations, 1);

        let sim = self::sim(Default::default()).await;
        sim.insert_item(1001, 5);
        let p = publisher(&sim, &sim.config().access_token, "1", walk());
        sim.faults().fail_next(1, 502);
        assert_retryable(p.read_stock().await, &["shopify:127.0.0.1:", "HTTP 502"]);
        sim.faults().outage(true);
        assert_retryable(p.read_stock().await, &["HTTP 503"]);
        sim.faults().outage(false);
        assert_eq!(
            p.read_stock().await.unwrap().levels,
            vec![level("SKU-A", 5)]
        );

        let wrong = publisher(&sim, "shpat_wrong", "1", walk());
        assert_permanent(wrong.read_stock().await, &["HTTP 401", "Invalid API key"]);
        let elsewhere = publisher(&sim, &sim.config().access_token, "77", walk());
        assert_permanent(elsewhere.read_stock().await, &["location", "Location/77"]);
    }

    #[tokio::test]
    async fn edits_by_hand_and_lost_writes_show_in_the_read() {
        let sim = sim(Default::default()).await;
        sim.insert_item(1001, 5);
        sim.insert_item(1002, 3);
        sim.insert_item(1003, 8);
        let p = publisher(&sim, &sim.config().access_token, "1", walk());

        let sent = p.send(&[availability("SKU-A", 4, Some(5), 1)]).await;
        assert_eq!(sent.results, vec![MsgResult::Delivered]);
        sim.lose_next_writes(1);
        let lost = p.send(&[availability("SKU-B", 9, Some(3), 2)]).await;
        assert_eq!(
            lost.results,
            vec![MsgResult::Delivered],
            "a lost write is acknowledged"
        );
        sim.edit_by_hand("1003", 42);

        let pull = p.read_stock().await.unwrap();
        assert_eq!(
            pull.levels,
            vec![level("SKU-A", 4), level("SKU-B", 3), level("SKU-C", 42)]
        );
        assert_eq!(sim.stats().writes_lost, 1);
        assert_eq!(sim.history("1002"), Vec::<i64>::new());
        // Only the next write was lost.
        let again = p.send(&[availability("SKU-B", 9, Some(3), 3)]).await;
        assert_eq!(again.results, vec![MsgResult::Delivered]);
        assert_eq!(shown(&p.read_stock().await.unwrap(), "SKU-B"), Some(9));
    }
}

mod amazon {
    use super::*;
    use crossdock_adapters::amazon::{AmazonConfig, AmazonPublisher};
    use crossdock_sim::{AmazonSim, RateLimit};

    fn publisher(sim: &AmazonSim, client_secret: &str, sku_is_item: bool) -> AmazonPublisher {
        let c = sim.config();
        let config: AmazonConfig = serde_json::from_value(json!({
            "endpoint": sim.url(),
            "lwa_url": sim.token_url(),
            "seller_id": c.seller_id,
            "marketplace_id": c.marketplace_ids[0],
            "timeout_ms": 5_000,
            "feed_threshold": 0,
            "sku_is_item": sku_is_item,
        }))
        .unwrap();
        let walk = Crosswalk::from_pairs([("ITEM-1", "SKU 1/A"), ("ITEM-2", "SKU-2")]).unwrap();
        AmazonPublisher::new(
            config,
            c.refresh_token.clone(),
            c.client_id.clone(),
            client_secret.into(),
            walk,
        )
        .unwrap()
    }

    fn search_pages(sim: &AmazonSim) -> usize {
        let path = format!("/listings/2021-08-01/items/{}", sim.config().seller_id);
        sim.requests().iter().filter(|r| r.path == path).count()
    }

    async fn sim(config: crossdock_sim::AmazonConfig) -> AmazonSim {
        AmazonSim::start(config).await.unwrap()
    }

    #[tokio::test]
    async fn reads_every_listing_over_several_pages_by_the_writes_sku_rule() {
        let sim = sim(crossdock_sim::AmazonConfig {
            search_page_size_max: 2,
            ..Default::default()
        })
        .await;
        sim.insert_item("SKU 1/A", 3);
        sim.insert_item("SKU-2", 0);
        sim.insert_item("SKU-3", 7);
        // A SKU named like an item that is mapped to another SKU is not that item's listing.
        sim.insert_item("ITEM-1", 5);
        let secret = sim.config().client_secret.clone();

        let p = publisher(&sim, &secret, true);
        let pull = p.read_stock().await.unwrap();
        assert_eq!(
            pull.levels,
            vec![level("ITEM-1", 3), level("ITEM-2", 0), level("SKU-3", 7)]
        );
        assert_eq!(pull.unmapped, vec!["ITEM-1"]);
        assert_eq!(search_pages(&sim), 2, "4 listings, 2 per page");

        let strict = publisher(&sim, &secret, false);
        let pull = strict.read_stock().await.unwrap();
        assert_eq!(pull.levels, vec![level("ITEM-1", 3), level("ITEM-2", 0)]);
        assert_eq!(pull.unmapped, vec!["ITEM-1", "SKU-3"]);
        assert_eq!(sim.stats().rate_limit_violations, 0);
    }

    #[tokio::test]
    async fn more_listings_than_the_search_pages_through_fail_the_read() {
        let sim = sim(crossdock_sim::AmazonConfig {
            search_page_size_max: 2,
            search_results_max: 3,
            ..Default::default()
        })
        .await;
        for n in 1..=5 {
            sim.insert_item(&format!("SKU-{n}"), n);
        }
        let p = publisher(&sim, &sim.config().client_secret.clone(), true);
        assert_permanent(p.read_stock().await, &["found 5", "listed 3", "1,000"]);
        assert_eq!(search_pages(&sim), 2);
    }

    #[tokio::test]
    async fn quota_and_5xx_reads_are_retryable_and_bad_credentials_permanent() {
        // Amazon's own bucket for the search is nearly empty after one call.
        let mut config = crossdock_sim::AmazonConfig {
            search_page_size_max: 1,
            ..Default::default()
        };
        config.rate_limits.search_listings_items = RateLimit::new(0.01, 1.0);
        let sim = sim(config).await;
        sim.insert_item("SKU 1/A", 3);
        sim.insert_item("SKU-2", 4);
        let secret = sim.config().client_secret.clone();
        let p = publisher(&sim, &secret, true);
        assert_retryable(
            p.read_stock().await,
            &[
                "amazon:ATVPDKIKX0DER",
                "page 2",
                "HTTP 429",
                "QuotaExceeded",
            ],
        );
        assert_eq!(sim.stats().rate_limit_violations, 1);

        let sim = self::sim(Default::default()).await;
        sim.insert_item("SKU 1/A", 3);
        let p = publisher(&sim, &secret, true);
        // A first read fetches and caches the access token, so the faults below meet the search.
        assert_eq!(
            p.read_stock().await.unwrap().levels,
            vec![level("ITEM-1", 3)]
        );
        sim.faults().fail_next(1, 500);
        assert_retryable(p.read_stock().await, &["page 1", "HTTP 500"]);
        sim.faults().outage(true);
        assert_retryable(p.read_stock().await, &["HTTP 503"]);
        sim.faults().outage(false);

        let wrong = publisher(&sim, "not-the-secret", true);
        assert_permanent(wrong.read_stock().await, &["HTTP 401", "invalid_client"]);
    }

    #[tokio::test]
    async fn edits_by_hand_and_lost_writes_show_in_the_read() {
        let sim = sim(Default::default()).await;
        sim.insert_item("SKU 1/A", 3);
        sim.insert_item("SKU-2", 4);
        sim.insert_item("SKU-3", 1);
        let p = publisher(&sim, &sim.config().client_secret.clone(), true);

        let sent = p.send(&[availability("ITEM-1", 9, None, 1)]).await;
        assert_eq!(sent.results, vec![MsgResult::Delivered]);
        sim.lose_next_writes(1);
        let lost = p.send(&[availability("ITEM-2", 6, None, 2)]).await;
        assert_eq!(
            lost.results,
            vec![MsgResult::Delivered],
            "a lost write is acknowledged"
        );
        sim.edit_by_hand("SKU-3", 11);

        let pull = p.read_stock().await.unwrap();
        assert_eq!(
            pull.levels,
            vec![level("ITEM-1", 9), level("ITEM-2", 4), level("SKU-3", 11)]
        );
        assert_eq!(sim.stats().writes_lost, 1);
    }
}

mod woocommerce {
    use super::*;
    use crossdock_adapters::woocommerce::{WooConfig, WooPublisher};
    use crossdock_sim::{RateLimit, WooSim};

    fn publisher(sim: &WooSim, secret: &str) -> WooPublisher {
        let walk = Crosswalk::from_pairs([
            ("SIMPLE-1", "93"),
            ("SIMPLE-2", "94"),
            ("SHIRT-S", "22/23"),
            ("SHIRT-M", "22/24"),
            ("SHIRT-L", "22/25"),
            ("MUG-RED", "40/41"),
        ])
        .unwrap();
        WooPublisher::new(
            WooConfig {
                url: sim.url().into(),
                timeout_ms: 5_000,
            },
            sim.config().consumer_key.clone(),
            secret.into(),
            walk,
        )
        .unwrap()
    }

    fn list_pages(sim: &WooSim) -> Vec<String> {
        sim.requests()
            .into_iter()
            .filter(|r| r.method == "GET")
            .map(|r| r.path)
            .collect()
    }

    #[tokio::test]
    async fn reads_products_and_variations_over_several_pages() {
        let sim = WooSim::start(crossdock_sim::WooConfig {
            per_page_max: 2,
            ..Default::default()
        })
        .await
        .unwrap();
        sim.insert_product(93, 5);
        sim.insert_product(94, 0);
        sim.insert_product(95, 8);
        sim.insert_variation(22, 23, 1);
        sim.insert_variation(22, 24, 2);
        sim.insert_variation(22, 25, 3);
        sim.insert_variation(40, 41, 6);
        // Product 40 manages stock at the parent too.
        sim.insert_product(40, 10);
        let p = publisher(&sim, &sim.config().consumer_secret.clone());

        let pull = p.read_stock().await.unwrap();
        assert_eq!(
            pull.levels,
            vec![
                level("MUG-RED", 6),
                level("SHIRT-L", 3),
                level("SHIRT-M", 2),
                level("SHIRT-S", 1),
                level("SIMPLE-1", 5),
                level("SIMPLE-2", 0),
            ]
        );
        assert_eq!(pull.unmapped, vec!["40", "95"]);
        assert_eq!(
            list_pages(&sim),
            [
                // Products 22, 40, 93, 94, 95: three pages of two.
                "/wp-json/wc/v3/products",
                "/wp-json/wc/v3/products",
                "/wp-json/wc/v3/products",
                // 22's three variations: two pages; 40's one: one page.
                "/wp-json/wc/v3/products/22/variations",
                "/wp-json/wc/v3/products/22/variations",
                "/wp-json/wc/v3/products/40/variations",
            ]
        );
    }

    #[tokio::test]
    async fn rate_limited_and_5xx_reads_are_retryable_and_a_bad_key_permanent() {
        let sim = WooSim::start(crossdock_sim::WooConfig {
            per_page_max: 1,
            rate_limit: Some(RateLimit::new(0.01, 1.0)),
            ..Default::default()
        })
        .await
        .unwrap();
        sim.insert_product(93, 5);
        sim.insert_product(94, 6);
        let secret = sim.config().consumer_secret.clone();
        let p = publisher(&sim, &secret);
        assert_retryable(
            p.read_stock().await,
            &["woocommerce:127.0.0.1:", "products, page 2", "HTTP 429"],
        );

        let sim = WooSim::start(Default::default()).await.unwrap();
        sim.insert_product(93, 5);
        let p = publisher(&sim, &secret);
        sim.faults().fail_next(1, 503);
        assert_retryable(p.read_stock().await, &["HTTP 503"]);
        assert_eq!(
            p.read_stock().await.unwrap().levels,
            vec![level("SIMPLE-1", 5)]
        );
        let wrong = publisher(&sim, "cs_wrong");
        assert_permanent(
            wrong.read_stock().await,
            &["HTTP 401", "Consumer secret is invalid"],
        );
    }

    #[tokio::test]
    async fn edits_by_hand_and_lost_writes_show_in_the_read() {
        let sim = WooSim::start(Default::default()).await.unwrap();
        sim.insert_product(93, 5);
        sim.insert_product(94, 6);
        sim.insert_variation(22, 23, 1);
        let p = publisher(&sim, &sim.config().consumer_secret.clone());

        sim.lose_next_writes(1);
        let outcome = p
            .send(&[
                availability("SIMPLE-1", 7, None, 1),
                availability("SIMPLE-2", 8, None, 2),
            ])
            .await;
        assert_eq!(outcome.results, vec![MsgResult::Delivered; 2]);
        sim.edit_by_hand("22/23", 30);

        let pull = p.read_stock().await.unwrap();
        // The first write of the batch was lost, the second applied.
        assert_eq!(
            pull.levels,
            vec![
                level("SHIRT-S", 30),
                level("SIMPLE-1", 5),
                level("SIMPLE-2", 8)
            ]
        );
        assert_eq!(sim.stats().writes_lost, 1);
    }
}
