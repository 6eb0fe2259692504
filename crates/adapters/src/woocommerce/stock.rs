//! Reading back the stock WooCommerce shows (see [`crate::stock`]).
//!
//! Faithful to the REST API v3, with the publisher's Basic authentication:
//! - `GET {api}/products?per_page=100&page=N&orderby=id&order=asc`: every product. A simple
//!   product is a level `"<id>"` (`stock_quantity`, null read as 0). A variable product (type
//!   `variable`, or a non-empty `variations` list) is a level only when it manages stock itself
//!   (`manage_stock: true`); its variations are read next.
//! - `GET {api}/products/{id}/variations?per_page=100&page=N&orderby=id&order=asc` for each
//!   variable product: a level `"<id>/<variation_id>"` per variation, the crosswalk's form.
//!
//! Pages follow `X-WP-TotalPages`; without that header, a full page means there may be more.
//! Ordering by id keeps pages stable while products are added (new ids come last). Statuses
//! read as for writes: 429 and 5xx retryable, 401/403/404 permanent.

use crossdock_delivery::{BoxFuture, Failure, http};
use serde_json::Value;

use super::publish::{WooItem, WooPublisher};
use crate::stock::{PullError, Shown, StockPull, StockReader};
use crate::util;

/// Objects per list page: WordPress's largest `per_page`.
pub const PER_PAGE: usize = 100;

/// One list page: its objects, and whether another page follows.
#[derive(Debug, PartialEq)]
struct ListPage {
    objects: Vec<Value>,
    more: bool,
}

impl WooPublisher {
    async fn read_products(&self) -> Result<StockPull, PullError> {
        let mut shown = Shown::default();
        let mut parents: Vec<u64> = Vec::new();
        self.list_all("/products", "products", &mut shown, |object| {
            let product = read_product(object)?;
            if product.variable {
                parents.push(product.id);
            }
            Ok(product
                .quantity
                .map(|quantity| (product.id.to_string(), quantity)))
        })
        .await?;
        for parent in parents {
            let path = format!("/products/{parent}/variations");
            let what = format!("variations of product {parent}");
            self.list_all(&path, &what, &mut shown, |object| {
                let variation = object_id(object)?;
                let quantity = stock_quantity(object, variation)?;
                Ok(Some((format!("{parent}/{variation}"), quantity)))
            })
            .await?;
        }
        let index = self.crosswalk.index_by(WooItem::parse);
        Ok(shown.finish(|external| {
            WooItem::parse(external)
                .and_then(|woo| index.get(&woo))
                .map(|items| items.iter().map(|&item| item.to_owned()).collect())
                .unwrap_or_default()
        }))
    }

    /// Reads every page of `path`; `level_of` reads each object into its level (in the
    /// crosswalk's form), if it has one.
    async fn list_all<F>(
        &self,
        path: &str,
        what: &str,
        shown: &mut Shown,
        mut level_of: F,
    ) -> Result<(), PullError>
    where
        F: FnMut(&Value) -> Result<Option<(String, i64)>, String>,
    {
        let mut page = 1usize;
        loop {
            shown.page(&self.channel, what)?;
            let context = format!("{what}, page {page}");
            let list = self
                .list_page(path, page)
                .await
                .map_err(|f| PullError::from_failure(&self.channel, &context, f))?;
            for object in &list.objects {
                let level = level_of(object)
                    .map_err(|reason| PullError::permanent(&self.channel, &context, reason))?;
                if let Some((external, quantity)) = level {
                    shown.level(&self.channel, external, quantity)?;
                }
            }
            if !list.more {
                return Ok(());
            }
            page += 1;
        }
    }

    async fn list_page(&self, path: &str, page: usize) -> Result<ListPage, Failure> {
        let response = self
            .client
            .get(format!("{}{path}", self.api))
            .query(&[
                ("per_page", PER_PAGE.to_string()),
                ("page", page.to_string()),
                ("orderby", "id".to_owned()),
                ("order", "asc".to_owned()),
            ])
            .basic_auth(&self.consumer_key, Some(&self.consumer_secret))
            .send()
            .await
            .map_err(|e| http::transport_failure(&e))?;
        if !response.status().is_success() {
            return Err(util::status_failure(response).await);
        }
        let status = response.status().as_u16();
        let total_pages = response
            .headers()
            .get("x-wp-totalpages")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let text = response
            .text()
            .await
            .map_err(|e| http::transport_failure(&e))?;
        read_list_page(status, &text, page, total_pages)
    }
}

impl StockReader for WooPublisher {
    fn read_stock(&self) -> BoxFuture<'_, Result<StockPull, PullError>> {
        Box::pin(self.read_products())
    }
}

/// What a listed product means for the read.
#[derive(Debug, PartialEq, Eq)]
struct Product {
    id: u64,
    /// Its own level, if it has one: every simple product, and a variable product that
    /// manages stock itself.
    quantity: Option<i64>,
    /// Whether its variations are to be read.
    variable: bool,
}

fn read_product(object: &Value) -> Result<Product, String> {
    let id = object_id(object)?;
    let variable = object.get("type").and_then(Value::as_str) == Some("variable")
        || object
            .get("variations")
            .and_then(Value::as_array)
            .is_some_and(|v| !v.is_empty());
    let own_level = !variable || object.get("manage_stock") == Some(&Value::Bool(true));
    let quantity = if own_level {
        Some(stock_quantity(object, id)?)
    } else {
        None
    };
    Ok(Product {
        id,
        quantity,
        variable,
    })
}

/// The `id` of a listed object.
fn object_id(object: &Value) -> Result<u64, String> {
    object
        .get("id")
        .and_then(Value::as_u64)
        .filter(|id| *id > 0)
        .ok_or_else(|| util::detail(format!("an object has no id: {object}")))
}

/// `stock_quantity`, null (stock not managed) read as 0.
fn stock_quantity(object: &Value, id: u64) -> Result<i64, String> {
    match object.get("stock_quantity") {
        None | Some(Value::Null) => Ok(0),
        Some(q) => q
            .as_i64()
            .ok_or_else(|| format!("the stock_quantity of {id} is not an integer: {q}")),
    }
}

/// Reads one list answer: a JSON array, and whether a page follows (`X-WP-TotalPages`, else
/// a full page).
fn read_list_page(
    status: u16,
    text: &str,
    page: usize,
    total_pages: Option<usize>,
) -> Result<ListPage, Failure> {
    let parsed: Value = serde_json::from_str(text).map_err(|e| {
        Failure::retryable(
            Some(status),
            util::detail(format!("answer is not JSON ({e}): {text}")),
        )
    })?;
    let Value::Array(objects) = parsed else {
        return Err(Failure::permanent(
            Some(status),
            util::detail(format!("answer is not a list: {text}")),
        ));
    };
    let more = match total_pages {
        Some(total) => page < total,
        None => objects.len() >= PER_PAGE,
    };
    Ok(ListPage { objects, more })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_delivery::RetryClass;
    use serde_json::json;

    #[test]
    fn pages_follow_the_total_pages_header_or_a_full_page() {
        let two = json!([{"id": 1}, {"id": 2}]).to_string();
        assert!(read_list_page(200, &two, 1, Some(3)).unwrap().more);
        assert!(!read_list_page(200, &two, 3, Some(3)).unwrap().more);
        // Without the header: a short page is the last.
        assert!(!read_list_page(200, &two, 1, None).unwrap().more);
        let full = Value::Array(vec![json!({"id": 1}); PER_PAGE]).to_string();
        assert!(read_list_page(200, &full, 1, None).unwrap().more);
        let f = read_list_page(200, r#"{"code": "x"}"#, 1, None).unwrap_err();
        assert_eq!(f.class, RetryClass::Permanent);
        let f = read_list_page(200, "<html>", 1, None).unwrap_err();
        assert_eq!(f.class, RetryClass::Retryable);
    }

    #[test]
    fn reads_the_documented_product_list() {
        let path = format!(
            "{}/../../testdata/channels/woocommerce/products__list_all_products__response.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let page = read_list_page(200, &text, 1, Some(1)).unwrap();
        assert!(!page.more);
        let products: Vec<Product> = page
            .objects
            .iter()
            .map(|o| read_product(o).unwrap())
            .collect();
        // 799 is variable and does not manage stock itself; 794 is simple, stock not managed
        // (null reads 0).
        assert_eq!(
            products,
            vec![
                Product {
                    id: 799,
                    quantity: None,
                    variable: true
                },
                Product {
                    id: 794,
                    quantity: Some(0),
                    variable: false
                },
            ]
        );
        let managed = json!({"id": 5, "type": "variable", "manage_stock": true,
            "stock_quantity": 12, "variations": [6]});
        assert_eq!(
            read_product(&managed),
            Ok(Product {
                id: 5,
                quantity: Some(12),
                variable: true
            })
        );
        assert!(stock_quantity(&json!({"stock_quantity": 1.5}), 7).is_err());
        assert_eq!(stock_quantity(&json!({"stock_quantity": -2}), 7), Ok(-2));
        assert!(read_product(&json!({"type": "simple"})).is_err());
    }
}
