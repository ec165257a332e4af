//! Running aggregates over processed orders: count, units, price sum/min/max/average,
//! globally and per product.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::order::Order;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stat {
    /// Orders processed.
    pub orders: u64,
    /// Sum of quantities.
    pub units: u64,
    /// Orders that carried a price (seed-000 JSON orders have none).
    pub priced: u64,
    pub price_sum: f64,
    pub price_min: Option<f64>,
    pub price_max: Option<f64>,
}

impl Stat {
    pub fn add(&mut self, order: &Order) {
        self.orders += 1;
        self.units += u64::try_from(order.quantity).unwrap_or(0);
        if let Some(p) = order.price {
            self.priced += 1;
            self.price_sum += p;
            self.price_min = Some(self.price_min.map_or(p, |m| m.min(p)));
            self.price_max = Some(self.price_max.map_or(p, |m| m.max(p)));
        }
    }

    /// The average price, or `None` before the first priced order.
    pub fn avg(&self) -> Option<f64> {
        (self.priced > 0).then(|| self.price_sum / self.priced as f64)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Aggregates {
    pub total: Stat,
    pub by_product: BTreeMap<String, Stat>,
}

impl Aggregates {
    pub fn add(&mut self, order: &Order) {
        self.total.add(order);
        match self.by_product.get_mut(&order.product) {
            Some(s) => s.add(order),
            None => {
                let mut s = Stat::default();
                s.add(order);
                self.by_product.insert(order.product.clone(), s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_track_totals_and_products() {
        let mut a = Aggregates::default();
        let mk = |product: &str, price: Option<f64>, quantity| Order {
            order_id: "x".into(),
            user: String::new(),
            product: product.into(),
            quantity,
            price,
            created_at_ms: 0,
        };
        a.add(&mk("pizza", Some(10.0), 2));
        a.add(&mk("pizza", Some(30.0), 1));
        a.add(&mk("salad", None, 4));
        assert_eq!(a.total.orders, 3);
        assert_eq!(a.total.units, 7);
        assert_eq!(a.total.avg(), Some(20.0));
        assert_eq!(a.by_product["pizza"].price_min, Some(10.0));
        assert_eq!(a.by_product["pizza"].price_max, Some(30.0));
        assert_eq!(a.by_product["salad"].avg(), None);
    }
}
