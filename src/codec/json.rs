//! seed-000's JSON orders: `{"order_id", "user", "item", "quantity"}`.

use serde::{Deserialize, Serialize};

use crate::order::Order;

#[derive(Debug, Serialize, Deserialize)]
struct JsonOrder {
    order_id: String,
    user: String,
    item: String,
    quantity: i32,
    /// Not in seed-000; accepted so JSON producers can feed the price aggregates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    price: Option<f64>,
}

pub fn decode(bytes: &[u8]) -> Result<Order, serde_json::Error> {
    let j: JsonOrder = serde_json::from_slice(bytes)?;
    Ok(Order {
        order_id: j.order_id,
        user: j.user,
        product: j.item,
        quantity: j.quantity,
        price: j.price,
        created_at_ms: 0,
    })
}

/// Seed-000's wire form of an order (without a price, as seed-000 has none).
pub fn encode(order: &Order) -> Vec<u8> {
    serde_json::to_vec(&JsonOrder {
        order_id: order.order_id.clone(),
        user: order.user.clone(),
        item: order.product.clone(),
        quantity: order.quantity,
        price: None,
    })
    .expect("an order always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_000_message_decodes() {
        let msg = br#"{"order_id": "123e4567-e89b-12d3-a456-426614174000", "user": "john", "item": "burger", "quantity": 5}"#;
        let o = decode(msg).unwrap();
        assert_eq!(o.order_id, "123e4567-e89b-12d3-a456-426614174000");
        assert_eq!(
            (o.user.as_str(), o.product.as_str(), o.quantity, o.price),
            ("john", "burger", 5, None)
        );
        assert_eq!(decode(&encode(&o)).unwrap(), o);
    }

    #[test]
    fn missing_field_is_an_error() {
        let err = decode(br#"{"order_id": "1", "user": "john", "quantity": 5}"#).unwrap_err();
        assert!(err.to_string().contains("item"), "{err}");
    }
}
