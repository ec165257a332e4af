//! `orderflow stats`: the aggregates in the store, per product and in total.

use super::args::StoreArgs;
use crate::{
    aggregate::Stat,
    console::{Console, amount},
};

pub async fn run(store: StoreArgs) -> anyhow::Result<()> {
    let a = store.open_required().await?.aggregates().await?;
    let out = Console::new();
    out.line(format_args!(
        "{:<10}  {:>7}  {:>7}  {:>9}  {:>8}  {:>8}",
        "PRODUCT", "ORDERS", "UNITS", "AVG", "MIN", "MAX"
    ));
    let row = |name: &str, s: &Stat| {
        out.line(format_args!(
            "{name:<10}  {:>7}  {:>7}  {:>9}  {:>8}  {:>8}",
            s.orders,
            s.units,
            amount(s.avg()),
            amount(s.price_min),
            amount(s.price_max)
        ));
    };
    for (p, s) in &a.by_product {
        row(p, s);
    }
    row("(all)", &a.total);
    Ok(())
}
