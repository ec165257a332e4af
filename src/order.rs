//! The order: the one domain type every format decodes into, and its validation.

use rand::RngExt;
use serde::Serialize;

/// An order as the processor sees it, whatever format it arrived in.
///
/// `price` is optional because seed-000's JSON orders carry none; such orders are
/// counted but do not move the price aggregates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Order {
    #[serde(rename = "orderId")]
    pub order_id: String,
    pub user: String,
    pub product: String,
    pub quantity: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Milliseconds since the Unix epoch when the producer created the order; 0 when unknown.
    #[serde(rename = "createdAt", skip_serializing_if = "is_zero")]
    pub created_at_ms: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidOrder {
    #[error("order id is empty")]
    EmptyId,
    #[error("product is empty")]
    EmptyProduct,
    #[error("price {0} is not a finite number >= 0")]
    BadPrice(f64),
    #[error("quantity {0} is below 1")]
    BadQuantity(i32),
}

impl Order {
    /// Checks what a downstream system would rely on. An invalid order can never
    /// succeed, so the processor dead-letters it without retrying.
    pub fn validate(&self) -> Result<(), InvalidOrder> {
        if self.order_id.trim().is_empty() {
            return Err(InvalidOrder::EmptyId);
        }
        if self.product.trim().is_empty() {
            return Err(InvalidOrder::EmptyProduct);
        }
        if let Some(price) = self.price
            && !(price.is_finite() && price >= 0.0)
        {
            return Err(InvalidOrder::BadPrice(price));
        }
        if self.quantity < 1 {
            return Err(InvalidOrder::BadQuantity(self.quantity));
        }
        Ok(())
    }

    /// The value of a numeric field, for failure rules.
    pub fn field(&self, field: Field) -> Option<f64> {
        match field {
            Field::Price => self.price,
            Field::Quantity => Some(f64::from(self.quantity)),
        }
    }
}

/// The numeric order fields a rule can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Price,
    Quantity,
}

const USERS: &[&str] = &[
    "john", "jane", "alice", "bob", "maria", "wei", "omar", "lena",
];
const PRODUCTS: &[&str] = &[
    "burger", "pizza", "salad", "sushi", "taco", "ramen", "pasta", "curry",
];

/// Prices of random orders, uniformly distributed, in cents.
pub const PRICE_CENTS: std::ops::RangeInclusive<i64> = 1_000..=15_000;

/// A random order like the seeds' producers make: a UUID, a user and product from a
/// small catalogue, quantity 1..=5 and a price between 10 and 150 with two decimals.
///
/// The UUID is version 7, which starts with the time of creation: stores index
/// orders by id, and ids that arrive in order land on the last pages of that
/// index, while random (v4) ids land all over it, so each batch rewrites pages
/// across the whole index (SQLite, 200,000 orders: 28,000 page writes instead of
/// 152,000).
pub fn random_order() -> Order {
    let mut rng = rand::rng();
    let cents: i64 = rng.random_range(PRICE_CENTS);
    Order {
        order_id: uuid::Uuid::now_v7().to_string(),
        user: USERS[rng.random_range(0..USERS.len())].to_string(),
        product: PRODUCTS[rng.random_range(0..PRODUCTS.len())].to_string(),
        quantity: rng.random_range(1..=5),
        price: Some(cents as f64 / 100.0),
        created_at_ms: now_ms(),
    }
}

/// The ids of the orders `orderflow produce` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Ids {
    /// UUID v7, in creation order
    #[default]
    V7,
    /// UUID v4, random, as most producers (the seeds' among them) send them
    V4,
}

impl Ids {
    /// A random order with an id of this kind.
    pub fn random_order(self) -> Order {
        let mut order = random_order();
        if self == Ids::V4 {
            order.order_id = uuid::Uuid::new_v4().to_string();
        }
        order
    }
}

pub fn now_ms() -> i64 {
    system_ms(std::time::SystemTime::now())
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn system_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_orders_have_ids_in_creation_order() {
        let ids: Vec<String> = (0..1000).map(|_| random_order().order_id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids out of order");
        let first = uuid::Uuid::parse_str(&ids[0]).unwrap();
        assert_eq!(first.get_version_num(), 7);
    }

    fn order() -> Order {
        Order {
            order_id: "a".into(),
            user: "john".into(),
            product: "burger".into(),
            quantity: 1,
            price: Some(1.0),
            created_at_ms: 0,
        }
    }

    #[test]
    fn validation_rejects_each_bad_field() {
        assert_eq!(order().validate(), Ok(()));
        let cases = [
            (
                Order {
                    order_id: " ".into(),
                    ..order()
                },
                InvalidOrder::EmptyId,
            ),
            (
                Order {
                    product: "".into(),
                    ..order()
                },
                InvalidOrder::EmptyProduct,
            ),
            (
                Order {
                    quantity: 0,
                    ..order()
                },
                InvalidOrder::BadQuantity(0),
            ),
            (
                Order {
                    price: Some(-1.0),
                    ..order()
                },
                InvalidOrder::BadPrice(-1.0),
            ),
        ];
        for (o, want) in cases {
            assert_eq!(o.validate(), Err(want));
        }
        let nan = Order {
            price: Some(f64::NAN),
            ..order()
        };
        assert!(matches!(nan.validate(), Err(InvalidOrder::BadPrice(_))));
    }

    #[test]
    fn random_orders_are_valid_and_in_range() {
        for _ in 0..1000 {
            let o = random_order();
            o.validate().unwrap();
            let p = o.price.unwrap();
            assert!((10.0..=150.0).contains(&p), "{p}");
        }
    }
}
