//! Round trips against the simulators of `crossdock-sim`: the value lands on the platform,
//! the platform's refusals come back classified, nothing is applied twice.

use crossdock_adapters::Crosswalk;
use crossdock_delivery::{Body, Message, MsgResult, RetryClass, Target};
use serde_json::json;

use crate::stub::availability;

fn permanent(r: &MsgResult) -> bool {
    matches!(r, MsgResult::Failed(f) if f.class == RetryClass::Permanent)
}

fn retryable(r: &MsgResult) -> bool {
    matches!(r, MsgResult::Failed(f) if f.class == RetryClass::Retryable)
}

mod shopify {
    use super::*;
    use crossdock_adapters::shopify::{ShopifyConfig, ShopifyPublisher};
    use crossdock_sim::{ShopifySim, ShopifyThrottle};

    fn publisher(sim: &ShopifySim, token: &str) -> ShopifyPublisher {
        let walk = Crosswalk::from_pairs([
            ("SKU-A", "1001"),
            ("SKU-B", "gid://shopify/InventoryItem/1002"),
            ("SKU-C", "1003"),
        ])
        .unwrap();
        ShopifyPublisher::new(
            ShopifyConfig {
                shop_url: sim.url().into(),
                api_version: "2026-01".into(),
                location_id: "1".into(),
                timeout_ms: 5_000,
                mutation_cost: 10.0,
            },
            token.into(),
            walk,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn sets_quantities_with_compare_and_set_all_or_nothing() {
        let sim = ShopifySim::start(Default::default()).await.unwrap();
        sim.insert_item(1001, 5);
        sim.insert_item(1002, 3);
        sim.insert_item(1003, 8);
        let p = publisher(&sim, &sim.config().access_token);

        let first = [
            availability("SKU-A", 4, Some(5), 1),
            availability("SKU-B", 2, Some(3), 2),
        ];
        let outcome = p.send(&first).await;
        assert_eq!(outcome.results, vec![MsgResult::Delivered; 2]);
        assert_eq!(sim.quantity("1001"), Some(4));
        assert_eq!(sim.quantity("1002"), Some(2));
        assert_eq!(outcome.feedback.capacity, Some(1000.0));
        assert_eq!(outcome.feedback.rate, Some(100.0));
        assert_eq!(outcome.feedback.cost, Some(10.0));

        // The same call again (a resend after a lost answer) replays, applying nothing twice.
        assert_eq!(p.send(&first).await.results, vec![MsgResult::Delivered; 2]);
        assert_eq!(sim.history("1001"), vec![4]);

        // Someone edits SKU-C in the Shopify admin: the next write for it is a mismatch, and
        // the all-or-nothing call leaves SKU-A alone too.
        sim.set_quantity("1003", 11);
        let outcome = p
            .send(&[
                availability("SKU-A", 1, Some(4), 3),
                availability("SKU-C", 7, Some(8), 4),
            ])
            .await;
        assert_eq!(
            outcome.results,
            vec![MsgResult::Requeue, MsgResult::Mismatch { found: None }]
        );
        assert_eq!(sim.quantity("1001"), Some(4));
        assert_eq!(sim.quantity("1003"), Some(11));
        // The lane resyncs from what Shopify shows.
        assert_eq!(p.read_current("SKU-C").await, Some(Ok(11)));
        let outcome = p
            .send(&[
                availability("SKU-A", 1, Some(4), 3),
                availability("SKU-C", 7, Some(11), 5),
            ])
            .await;
        assert_eq!(outcome.results, vec![MsgResult::Delivered; 2]);
        assert_eq!(
            (sim.quantity("1001"), sim.quantity("1003")),
            (Some(1), Some(7))
        );
    }

    #[tokio::test]
    async fn refusals_throttling_and_outages_are_classified() {
        let sim = ShopifySim::start(crossdock_sim::ShopifyConfig {
            throttle: ShopifyThrottle {
                maximum_available: 20.0,
                restore_rate: 1.0,
            },
            ..Default::default()
        })
        .await
        .unwrap();
        let p = publisher(&sim, &sim.config().access_token);

        sim.faults().permanent_items(["1002"]);
        let outcome = p
            .send(&[
                availability("SKU-A", 1, None, 1),
                availability("SKU-B", 1, None, 2),
            ])
            .await;
        assert_eq!(outcome.results[0], MsgResult::Requeue);
        assert!(permanent(&outcome.results[1]), "{:?}", outcome.results[1]);
        sim.faults().clear();

        // 20 points, 10 per call, 1 back per second: within three quick calls one is throttled,
        // and it applies nothing.
        let mut delivered = None;
        let mut throttled = None;
        for quantity in 2..5 {
            let outcome = p.send(&[availability("SKU-A", quantity, None, 3)]).await;
            match &outcome.results[0] {
                MsgResult::Delivered => delivered = Some(quantity),
                MsgResult::Failed(f) => {
                    assert_eq!(
                        (f.class, f.status),
                        (RetryClass::Retryable, Some(429)),
                        "{f:?}"
                    );
                    throttled = Some(outcome);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let throttled = throttled.expect("a call was throttled");
        assert!(throttled.feedback.available.unwrap() < 10.0);
        assert_eq!(throttled.feedback.capacity, Some(20.0));
        assert_eq!(sim.quantity("1001"), delivered.or(Some(0)));

        sim.faults().outage(true);
        let down = p.send(&[availability("SKU-A", 2, None, 4)]).await;
        assert!(
            matches!(&down.results[0], MsgResult::Failed(f) if f.class == RetryClass::Retryable && f.status == Some(503))
        );
        sim.faults().outage(false);

        let wrong = publisher(&sim, "shpat_wrong");
        let refused = wrong.send(&[availability("SKU-A", 2, None, 5)]).await;
        assert!(
            matches!(&refused.results[0], MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.status == Some(401))
        );
    }
}

mod amazon {
    use super::*;
    use crossdock_adapters::amazon::{AmazonConfig, AmazonPublisher};
    use crossdock_sim::AmazonSim;

    fn publisher(
        sim: &AmazonSim,
        refresh_token: &str,
        extra: serde_json::Value,
    ) -> AmazonPublisher {
        let c = sim.config();
        let mut config = json!({
            "endpoint": sim.url(),
            "lwa_url": sim.token_url(),
            "seller_id": c.seller_id,
            "marketplace_id": c.marketplace_ids[0],
            "timeout_ms": 5_000,
        });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        let config: AmazonConfig = serde_json::from_value(config).unwrap();
        let walk = Crosswalk::from_pairs([("ITEM-1", "SKU 1/A")]).unwrap();
        AmazonPublisher::new(
            config,
            refresh_token.into(),
            c.client_id.clone(),
            c.client_secret.clone(),
            walk,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn patches_and_reads_listings() {
        let sim = AmazonSim::start(Default::default()).await.unwrap();
        sim.insert_item("SKU 1/A", 3);
        let p = publisher(&sim, &sim.config().refresh_token.clone(), json!({}));
        let outcome = p.send(&[availability("ITEM-1", 9, None, 1)]).await;
        assert_eq!(outcome.results, vec![MsgResult::Delivered]);
        assert!(
            outcome.feedback.rate.is_some(),
            "x-amzn-RateLimit-Limit is read"
        );
        assert_eq!(sim.quantity("SKU 1/A"), Some(9));
        assert_eq!(p.read_current("ITEM-1").await, Some(Ok(9)));
        // sku_is_item: an unmapped item is its own SKU.
        assert_eq!(
            p.send(&[availability("PLAIN-SKU", 4, None, 2)])
                .await
                .results,
            vec![MsgResult::Delivered]
        );
        assert_eq!(sim.quantity("PLAIN-SKU"), Some(4));

        sim.faults().permanent_items(["BANNED"]);
        let refused = p.send(&[availability("BANNED", 1, None, 3)]).await;
        assert!(
            matches!(&refused.results[0], MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.status == Some(400))
        );

        let bad = publisher(&sim, "Atzr|revoked", json!({}));
        let outcome = bad.send(&[availability("ITEM-1", 1, None, 4)]).await;
        assert!(
            matches!(&outcome.results[0], MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.detail.contains("invalid_grant")),
            "{outcome:?}"
        );
        assert_eq!(sim.quantity("SKU 1/A"), Some(9));
    }

    #[tokio::test]
    async fn a_backlog_goes_through_a_listings_feed() {
        let sim = AmazonSim::start(crossdock_sim::AmazonConfig {
            feed_processing_delay: std::time::Duration::from_millis(50),
            ..Default::default()
        })
        .await
        .unwrap();
        sim.faults().permanent_items(["SKU-3"]);
        let p = publisher(
            &sim,
            &sim.config().refresh_token.clone(),
            json!({"feed_threshold": 4, "feed_poll_ms": 20, "feed_timeout_s": 20}),
        );
        assert_eq!(p.batch_size(6), 6);
        let document = Message {
            key: "d".into(),
            ledger_seq: 9,
            body: Body::Document { json: "{}".into() },
            idempotency_key: "d".into(),
            correlation_id: None,
        };
        let batch = [
            availability("ITEM-1", 5, None, 1),
            availability("SKU-2", 6, None, 2),
            availability("SKU-3", 7, None, 3),
            document,
            availability("SKU-5", 0, None, 5),
        ];
        let outcome = p.send(&batch).await;
        let r = &outcome.results;
        assert_eq!(r[0], MsgResult::Delivered);
        assert_eq!(r[1], MsgResult::Delivered);
        assert!(permanent(&r[2]), "{:?}", r[2]);
        assert!(permanent(&r[3]));
        assert_eq!(r[4], MsgResult::Delivered);
        assert_eq!(sim.quantity("SKU 1/A"), Some(5));
        assert_eq!(sim.quantity("SKU-2"), Some(6));
        assert_eq!(sim.quantity("SKU-5"), Some(0));
        assert_ne!(sim.quantity("SKU-3"), Some(7));
        let feeds: Vec<String> = sim
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/feeds/2021-06-30/feeds"))
            .map(|r| r.path.clone())
            .collect();
        assert_eq!(feeds.len(), 1, "one feed for the whole batch");
        assert_eq!(sim.stats().rate_limit_violations, 0);
    }

    #[tokio::test]
    async fn an_sp_api_outage_is_retryable() {
        let sim = AmazonSim::start(Default::default()).await.unwrap();
        let p = publisher(&sim, &sim.config().refresh_token.clone(), json!({}));
        sim.faults().outage(true);
        let outcome = p.send(&[availability("X", 1, None, 1)]).await;
        assert!(retryable(&outcome.results[0]), "{outcome:?}");
    }
}

mod woocommerce {
    use super::*;
    use crossdock_adapters::woocommerce::{WooConfig, WooPublisher};
    use crossdock_sim::WooSim;

    fn publisher(sim: &WooSim, secret: &str) -> WooPublisher {
        let walk = Crosswalk::from_pairs([
            ("MUG", "799"),
            ("TEE-S", "22/732"),
            ("TEE-M", "22/733"),
            ("CAP", "40/41"),
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

    #[tokio::test]
    async fn updates_products_and_variations_and_reads_them_back() {
        let sim = WooSim::start(Default::default()).await.unwrap();
        sim.insert_product(799, 1);
        sim.insert_variation(22, 732, 1);
        sim.insert_variation(22, 733, 1);
        sim.insert_variation(40, 41, 1);
        sim.faults().permanent_items(["40/41"]);
        let p = publisher(&sim, &sim.config().consumer_secret.clone());
        let outcome = p
            .send(&[
                availability("MUG", 5, None, 1),
                availability("TEE-S", 6, None, 2),
                availability("CAP", 7, None, 3),
                availability("TEE-M", 0, None, 4),
            ])
            .await;
        let r = &outcome.results;
        assert_eq!(r[0], MsgResult::Delivered);
        assert_eq!(r[1], MsgResult::Delivered);
        assert!(
            matches!(&r[2], MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.detail.contains("invalid_id")),
            "{:?}",
            r[2]
        );
        assert_eq!(r[3], MsgResult::Delivered);
        assert_eq!(sim.quantity("799"), Some(5));
        assert_eq!(sim.quantity("22/732"), Some(6));
        assert_eq!(sim.quantity("22/733"), Some(0));
        assert_eq!(sim.quantity("40/41"), Some(1));
        assert_eq!(sim.requests().len(), 3, "products, parent 22, parent 40");
        assert_eq!(p.read_current("TEE-S").await, Some(Ok(6)));
        assert_eq!(p.read_current("MUG").await, Some(Ok(5)));

        let wrong = publisher(&sim, "cs_wrong");
        let refused = wrong.send(&[availability("MUG", 9, None, 5)]).await;
        assert!(
            matches!(&refused.results[0], MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.status == Some(401))
        );
        sim.faults().fail_next(1, 502);
        assert!(retryable(
            &p.send(&[availability("MUG", 9, None, 6)]).await.results[0]
        ));
        assert_eq!(sim.quantity("799"), Some(5));
    }
}

mod webhook {
    use super::*;
    use crossdock_adapters::webhook::{WebhookConfig, WebhookPublisher};
    use crossdock_sim::WebhookSim;

    #[tokio::test]
    async fn signed_deliveries_are_accepted_and_deduplicated() {
        let sim = WebhookSim::start(Default::default()).await.unwrap();
        let p = WebhookPublisher::new(
            WebhookConfig {
                url: format!("{}/inbox", sim.url()),
                timeout_ms: 5_000,
            },
            sim.config().secret.clone(),
        )
        .unwrap();
        let m = availability("SKU-1", 7, None, 42);
        assert_eq!(
            p.send(std::slice::from_ref(&m)).await.results,
            vec![MsgResult::Delivered]
        );
        assert_eq!(
            p.send(std::slice::from_ref(&m)).await.results,
            vec![MsgResult::Delivered]
        );
        let received = sim.received();
        assert_eq!(
            received.len(),
            1,
            "the repeat is acknowledged, not recorded twice"
        );
        assert_eq!(
            received[0].idempotency_key.as_deref(),
            Some("idem-SKU-1-42")
        );
        assert_eq!(received[0].correlation_id.as_deref(), Some("corr-42"));
        assert_eq!(received[0].body["available"], 7);
        assert_eq!(sim.quantity("SKU-1"), Some(7));
        assert_eq!(sim.bad_signatures(), 0);

        let forged = WebhookPublisher::new(
            WebhookConfig {
                url: sim.url().into(),
                timeout_ms: 5_000,
            },
            b"not the secret".to_vec(),
        )
        .unwrap();
        let refused = forged.send(&[availability("SKU-1", 1, None, 43)]).await;
        assert!(matches!(&refused.results[0], MsgResult::Failed(f) if f.status == Some(401)));
        assert_eq!(sim.bad_signatures(), 1);

        sim.faults().permanent_items(["SKU-9"]);
        let unknown = p.send(&[availability("SKU-9", 1, None, 44)]).await;
        assert!(
            matches!(&unknown.results[0], MsgResult::Failed(f) if f.class == RetryClass::Permanent && f.status == Some(422))
        );
    }
}
