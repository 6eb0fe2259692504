//! Demand: who orders what, when, and where. Built in, shaped like retail demand (two weeks
//! compressed into the run: a daily curve with a lunchtime and an evening peak for consumers and
//! office hours for businesses, quieter business weekends and busier consumer ones, a long tail
//! of item popularity, and a promotion burst in the middle), so the demo needs no files; or
//! replayed from a purchase history in the CDNOW format, compressed into the run.
//!
//! Everything here is pure: the same seed (or file) and duration give the same plan.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::world::{Channel, regions};

/// One customer order the demo will try to place.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// When, from the start of the run.
    pub at: Duration,
    pub channel: Channel,
    /// `(item index, quantity)`, distinct items.
    pub lines: Vec<(usize, i64)>,
    /// Ship-to region (sourcing prefers the DC that serves it).
    pub region: &'static str,
}

/// A stretch of the run where some items sell much more.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    pub from: Duration,
    pub to: Duration,
    pub items: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// In time order.
    pub orders: Vec<Order>,
    /// Where the demand came from, for the banner and the summary.
    pub origin: String,
    pub promotion: Option<Promotion>,
}

impl Plan {
    #[cfg(test)]
    /// Units each item is planned to sell over the run.
    pub fn units_per_item(&self, items: usize) -> Vec<i64> {
        let mut units = vec![0; items];
        for o in &self.orders {
            for (i, q) in &o.lines {
                units[*i] += q;
            }
        }
        units
    }
}

/// Mean orders per second of the built-in demand.
const BASE_RATE: f64 = 12.0;
/// Days of trading the built-in demand compresses into the run.
const DAYS: f64 = 14.0;
/// Zipf exponent of item popularity: a few items sell most, a long tail sells little.
const POPULARITY_EXPONENT: f64 = 1.1;

/// Item popularity by rank (item 0 most popular), sampled by inverting the cumulative weights.
struct Popularity {
    cumulative: Vec<f64>,
}

impl Popularity {
    fn new(items: usize) -> Popularity {
        let mut total = 0.0;
        let cumulative = (0..items)
            .map(|k| {
                total += 1.0 / ((k + 1) as f64).powf(POPULARITY_EXPONENT);
                total
            })
            .collect::<Vec<_>>();
        Popularity {
            cumulative: cumulative.iter().map(|c| c / total).collect(),
        }
    }

    /// The item at quantile `u` in `[0, 1)`.
    fn pick(&self, u: f64) -> usize {
        self.cumulative
            .partition_point(|c| *c <= u)
            .min(self.cumulative.len() - 1)
    }
}

/// A Gaussian bump around `centre` (hours), `width` hours wide.
fn bump(hour: f64, centre: f64, width: f64) -> f64 {
    (-((hour - centre) / width).powi(2) / 2.0).exp()
}

/// Relative order rate by hour of day (not normalised).
fn daily(channel: Channel, hour: f64) -> f64 {
    match channel {
        Channel::Shopify | Channel::Amazon => {
            0.12 + 0.55 * bump(hour, 12.5, 2.0) + bump(hour, 20.5, 2.2)
        }
        Channel::B2b | Channel::Retail => {
            0.03 + bump(hour, 10.5, 2.0) + 0.8 * bump(hour, 14.5, 1.8)
        }
    }
}

/// Relative order rate by day of week, Monday first (not normalised).
fn weekly(channel: Channel, day: usize) -> f64 {
    const CONSUMER: [f64; 7] = [0.9, 0.88, 0.92, 0.97, 1.08, 1.3, 1.22];
    const BUSINESS: [f64; 7] = [1.12, 1.15, 1.14, 1.1, 1.0, 0.18, 0.08];
    match channel {
        Channel::Shopify | Channel::Amazon => CONSUMER[day % 7],
        Channel::B2b | Channel::Retail => BUSINESS[day % 7],
    }
}

fn mix(channel: Channel) -> f64 {
    match channel {
        Channel::Shopify => 0.38,
        Channel::Amazon => 0.34,
        Channel::B2b => 0.14,
        Channel::Retail => 0.14,
    }
}

/// The mean of `f` over a day (by the hour) and a week, so each curve averages 1.
fn means(channel: Channel) -> (f64, f64) {
    let day = (0..240)
        .map(|t| daily(channel, t as f64 / 10.0))
        .sum::<f64>()
        / 240.0;
    let week = (0..7).map(|d| weekly(channel, d)).sum::<f64>() / 7.0;
    (day, week)
}

/// A Poisson count with mean `lambda` (small: Knuth's method).
fn poisson(rng: &mut fastrand::Rng, lambda: f64) -> u32 {
    let limit = (-lambda).exp();
    let mut p = 1.0;
    let mut k = 0;
    loop {
        p *= rng.f64();
        if p <= limit || k >= 64 {
            return k;
        }
        k += 1;
    }
}

/// The built-in demand over `duration` for `items` items.
pub fn built_in(seed: u64, duration: Duration, items: usize) -> Plan {
    let mut rng = fastrand::Rng::with_seed(seed);
    let popularity = Popularity::new(items);
    let regions = regions();
    let run_s = duration.as_secs_f64();
    let promo_from = run_s * 0.45;
    let promo_to = run_s * 0.55;
    // Featured: three bestsellers and five items from the middle of the range.
    let mut promo_items: Vec<usize> = (0..3.min(items)).collect();
    let mut middle: Vec<usize> = (items / 5..items * 7 / 10).filter(|i| *i >= 3).collect();
    rng.shuffle(&mut middle);
    promo_items.extend(middle.into_iter().take(5));
    let shapes: Vec<(Channel, f64, f64)> = Channel::ALL
        .iter()
        .map(|&c| {
            let (d, w) = means(c);
            (c, d, w)
        })
        .collect();
    let tick_s = 0.02;
    let mut orders = Vec::new();
    let mut t = 0.0;
    while t < run_s {
        let day_pos = t / run_s * DAYS;
        let day = day_pos as usize;
        let hour = day_pos.fract() * 24.0;
        let in_promo = (promo_from..promo_to).contains(&t);
        for &(channel, day_mean, week_mean) in &shapes {
            let boost = match (in_promo, channel) {
                (true, Channel::Shopify | Channel::Amazon) => 2.5,
                (true, _) => 1.2,
                (false, _) => 1.0,
            };
            let lambda = BASE_RATE * mix(channel) * daily(channel, hour) / day_mean
                * weekly(channel, day)
                / week_mean
                * boost
                * tick_s;
            for _ in 0..poisson(&mut rng, lambda) {
                let at = Duration::from_secs_f64(t + rng.f64() * tick_s);
                let pick = |rng: &mut fastrand::Rng| {
                    if in_promo && rng.f64() < 0.6 {
                        promo_items[rng.usize(..promo_items.len())]
                    } else {
                        popularity.pick(rng.f64())
                    }
                };
                let line_count = match channel {
                    Channel::Shopify => 1 + usize::from(rng.f64() < 0.15),
                    Channel::Amazon => 1,
                    Channel::B2b => rng.usize(1..=3),
                    Channel::Retail => rng.usize(1..=4),
                };
                let mut lines: Vec<(usize, i64)> = Vec::new();
                for _ in 0..line_count * 3 {
                    if lines.len() == line_count.min(items) {
                        break;
                    }
                    let item = pick(&mut rng);
                    if lines.iter().any(|(i, _)| *i == item) {
                        continue;
                    }
                    let u = rng.f64();
                    let qty = match channel {
                        Channel::Shopify => 1 + i64::from(u > 0.7) + i64::from(u > 0.92),
                        Channel::Amazon => 1 + i64::from(u > 0.82) + i64::from(u > 0.96),
                        Channel::B2b => rng.i64(2..=12),
                        Channel::Retail => 6 * rng.i64(1..=4),
                    };
                    lines.push((item, qty));
                }
                orders.push(Order {
                    at,
                    channel,
                    lines,
                    region: regions[rng.usize(..regions.len())],
                });
            }
        }
        t += tick_s;
    }
    orders.sort_by_key(|o| o.at);
    Plan {
        orders,
        origin: format!(
            "built in: {DAYS} days of retail demand compressed into {run_s:.0} s, seed {seed}"
        ),
        promotion: Some(Promotion {
            from: Duration::from_secs_f64(promo_from),
            to: Duration::from_secs_f64(promo_to),
            items: promo_items,
        }),
    }
}

/// One purchase of a history file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purchase {
    pub customer: u64,
    /// Days since 1970-01-01.
    pub day: i64,
    pub qty: i64,
}

/// What is wrong with a history file: each bad line with its number (1-based) and what is
/// wrong with it, or a problem with the file as a whole (`line` 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryError {
    pub file: String,
    pub problems: Vec<(usize, String)>,
}

/// Most bad lines listed; the rest are counted.
const PROBLEMS_SHOWN: usize = 10;

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (line, message) in self.problems.iter().take(PROBLEMS_SHOWN) {
            if *line == 0 {
                writeln!(f, "{}: {message}", self.file)?;
            } else {
                writeln!(f, "{} line {line}: {message}", self.file)?;
            }
        }
        if self.problems.len() > PROBLEMS_SHOWN {
            writeln!(
                f,
                "{}: {} more bad lines",
                self.file,
                self.problems.len() - PROBLEMS_SHOWN
            )?;
        }
        write!(
            f,
            "a history line is `customer_id yyyymmdd number_of_cds dollar_value` (whitespace-separated, as in CDNOW_master.txt)"
        )
    }
}

/// Reads a purchase history file.
pub fn read_history(path: &Path) -> Result<Vec<Purchase>, HistoryError> {
    let file = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| HistoryError {
        file: file.clone(),
        problems: vec![(0, format!("cannot read: {e}"))],
    })?;
    let text = String::from_utf8(text).map_err(|e| HistoryError {
        file: file.clone(),
        problems: vec![(
            0,
            format!(
                "not a text file (invalid UTF-8 at byte {})",
                e.utf8_error().valid_up_to()
            ),
        )],
    })?;
    parse_history(&text).map_err(|problems| HistoryError { file, problems })
}

/// Parses `customer_id yyyymmdd number_of_cds dollar_value` lines (any whitespace, CRLF or LF,
/// an optional header line starting with `customer_id`, blank lines skipped). Every bad line is
/// reported; nothing is returned unless every line is good.
pub fn parse_history(text: &str) -> Result<Vec<Purchase>, Vec<(usize, String)>> {
    let mut purchases = Vec::new();
    let mut problems = Vec::new();
    let mut seen_content = false;
    for (n, raw) in text.split('\n').enumerate() {
        let number = n + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let first = !seen_content;
        seen_content = true;
        if first && fields[0].eq_ignore_ascii_case("customer_id") {
            continue;
        }
        match parse_line(&fields) {
            Ok(p) => purchases.push(p),
            Err(message) => problems.push((number, message)),
        }
    }
    if problems.is_empty() && purchases.is_empty() {
        problems.push((0, "holds no purchases".to_string()));
    }
    if problems.is_empty() {
        Ok(purchases)
    } else {
        Err(problems)
    }
}

fn parse_line(fields: &[&str]) -> Result<Purchase, String> {
    if fields.len() != 4 {
        return Err(format!(
            "expected 4 fields (customer_id yyyymmdd number_of_cds dollar_value), found {}",
            fields.len()
        ));
    }
    let customer = fields[0]
        .parse::<u64>()
        .map_err(|_| format!("customer_id {:?} is not a whole number", fields[0]))?;
    let day = day_number(fields[1]).ok_or_else(|| {
        format!(
            "date {:?} is not a calendar date written yyyymmdd",
            fields[1]
        )
    })?;
    let qty = match fields[2].parse::<i64>() {
        Ok(q) if (1..=crossdock_model::event::QTY_MAX).contains(&q) => q,
        _ => {
            return Err(format!(
                "number_of_cds {:?} must be a whole number of at least 1",
                fields[2]
            ));
        }
    };
    match fields[3].parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => {}
        _ => {
            return Err(format!(
                "dollar_value {:?} is not an amount of at least 0",
                fields[3]
            ));
        }
    }
    Ok(Purchase { customer, day, qty })
}

/// `yyyymmdd` as days since 1970-01-01, if it is a real date.
fn day_number(raw: &str) -> Option<i64> {
    if raw.len() != 8 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = raw[..4].parse().ok()?;
    let month: u8 = raw[4..6].parse().ok()?;
    let day: u8 = raw[6..].parse().ok()?;
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    Some(i64::from(date.to_julian_day()) - 2_440_588)
}

/// A stable 64-bit mix of `x` (SplitMix64's finaliser).
fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A history compressed into `duration`: each purchase is an order of its quantity, at the
/// point of the run where its day falls (purchases of one day spread evenly over it). The item
/// and channel follow from the customer, so a customer keeps buying the same item on the same
/// channel; items are drawn by popularity, so a few customers' items are shared by many.
pub fn from_history(purchases: &[Purchase], duration: Duration, items: usize, file: &str) -> Plan {
    let popularity = Popularity::new(items);
    let regions = regions();
    let first = purchases.iter().map(|p| p.day).min().unwrap_or(0);
    let last = purchases.iter().map(|p| p.day).max().unwrap_or(0);
    let days = (last - first + 1) as f64;
    let mut by_day: Vec<&Purchase> = purchases.iter().collect();
    by_day.sort_by_key(|p| p.day);
    let run_s = duration.as_secs_f64();
    let mut orders = Vec::with_capacity(by_day.len());
    let mut i = 0;
    while i < by_day.len() {
        let day = by_day[i].day;
        let same_day = by_day[i..].iter().take_while(|p| p.day == day).count();
        for (k, p) in by_day[i..i + same_day].iter().enumerate() {
            let h = mix64(p.customer);
            let channel = match h % 100 {
                0..38 => Channel::Shopify,
                38..72 => Channel::Amazon,
                72..86 => Channel::B2b,
                _ => Channel::Retail,
            };
            let item = popularity.pick(((h >> 32) as f64) / 4_294_967_296.0);
            let at = ((day - first) as f64 + (k as f64 + 0.5) / same_day as f64) / days * run_s;
            orders.push(Order {
                at: Duration::from_secs_f64(at),
                channel,
                lines: vec![(item, p.qty)],
                region: regions[((h >> 16) % regions.len() as u64) as usize],
            });
        }
        i += same_day;
    }
    Plan {
        origin: format!(
            "history {file}: {} purchases over {days:.0} days compressed into {run_s:.0} s",
            purchases.len()
        ),
        orders,
        promotion: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_lines_are_read_with_header_crlf_and_blank_lines() {
        let text = "customer_id date number_of_cds dollar_value\r\n    00001 19970101 1  11.77\r\n\r\n00002\t19970112 5 77.00\r\n";
        assert_eq!(
            parse_history(text).unwrap(),
            vec![
                Purchase {
                    customer: 1,
                    day: 9862,
                    qty: 1
                },
                Purchase {
                    customer: 2,
                    day: 9873,
                    qty: 5
                }
            ]
        );
    }

    #[test]
    fn every_bad_history_line_is_named() {
        let text = "1 19970101 1 1.0\n2 19970230 1 1.0\n3 19970101 0 1.0\nx 19970101 1 1.0\n4 19970101 1\n5 19970101 2 -3\n";
        let problems = parse_history(text).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.0).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6]);
        assert!(problems[0].1.contains("\"19970230\""), "{problems:?}");
        assert!(problems[1].1.contains("number_of_cds"), "{problems:?}");
        assert!(problems[2].1.contains("customer_id"), "{problems:?}");
        assert!(problems[3].1.contains("found 3"), "{problems:?}");
        assert!(problems[4].1.contains("dollar_value"), "{problems:?}");
        assert_eq!(parse_history("\n\n").unwrap_err()[0].0, 0);
    }

    #[test]
    fn a_history_is_compressed_into_the_run_and_customers_keep_their_item_and_channel() {
        let purchases: Vec<Purchase> = (0..300)
            .map(|i| Purchase {
                customer: i % 40,
                day: 10_000 + i64::from(i as u32 / 10),
                qty: 1 + (i % 3) as i64,
            })
            .collect();
        let plan = from_history(&purchases, Duration::from_secs(30), 50, "h.txt");
        assert_eq!(plan.orders.len(), 300);
        assert!(plan.orders.iter().all(|o| o.at < Duration::from_secs(30)));
        assert!(plan.orders.windows(2).all(|w| w[0].at <= w[1].at));
        let units: i64 = plan.units_per_item(50).iter().sum();
        assert_eq!(units, purchases.iter().map(|p| p.qty).sum::<i64>());
        // Same customer, same item and channel, wherever it falls.
        let again = from_history(&purchases, Duration::from_secs(30), 50, "h.txt");
        assert_eq!(plan.orders, again.orders);
        let mut seen = std::collections::HashMap::new();
        for (p, o) in purchases.iter().zip(&plan.orders) {
            let first = seen.entry(p.customer).or_insert((o.lines[0].0, o.channel));
            assert_eq!(*first, (o.lines[0].0, o.channel));
        }
    }

    #[test]
    fn built_in_demand_has_a_long_tail_a_promotion_and_a_daily_shape() {
        let run = Duration::from_secs(140);
        let plan = built_in(7, run, 100);
        assert_eq!(plan.orders.len(), built_in(7, run, 100).orders.len());
        let n = plan.orders.len() as f64;
        assert!(
            (n / 140.0 - BASE_RATE).abs() < BASE_RATE * 0.35,
            "{n} orders"
        );
        let units = plan.units_per_item(100);
        let top: i64 = units[..10].iter().sum();
        let total: i64 = units.iter().sum();
        assert!(top * 3 > total, "the top 10% of items sell over a third");
        assert!(units[50..].iter().any(|u| *u > 0), "the tail sells too");
        // The promotion: more orders per second than the average, and its items lead.
        let promo = plan.promotion.clone().unwrap();
        let during = plan
            .orders
            .iter()
            .filter(|o| o.at >= promo.from && o.at < promo.to)
            .count() as f64;
        let per_s = during / (promo.to - promo.from).as_secs_f64();
        assert!(per_s > n / 140.0 * 1.3, "{per_s} per s in the promotion");
        // Consumers: evenings beat early mornings, summed over the days.
        let hour_of = |o: &Order| (o.at.as_secs_f64() / 140.0 * DAYS).fract() * 24.0;
        let b2c = |o: &&Order| matches!(o.channel, Channel::Shopify | Channel::Amazon);
        let evening = plan
            .orders
            .iter()
            .filter(b2c)
            .filter(|o| (19.0..22.0).contains(&hour_of(o)))
            .count();
        let night = plan
            .orders
            .iter()
            .filter(b2c)
            .filter(|o| (3.0..6.0).contains(&hour_of(o)))
            .count();
        assert!(evening > night * 3, "evening {evening}, night {night}");
        for o in &plan.orders {
            let mut items: Vec<usize> = o.lines.iter().map(|l| l.0).collect();
            items.dedup();
            assert_eq!(items.len(), o.lines.len());
            assert!(o.lines.iter().all(|l| l.1 > 0));
        }
    }

    #[test]
    fn popularity_covers_every_item_in_rank_order() {
        let p = Popularity::new(10);
        assert_eq!(p.pick(0.0), 0);
        assert_eq!(p.pick(0.999_999), 9);
        let counts = (0..10_000).fold(vec![0; 10], |mut c, k| {
            c[p.pick(k as f64 / 10_000.0)] += 1;
            c
        });
        assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    }
}
