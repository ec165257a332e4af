//! `--fail-when` rules: simulate a transient failure for orders matching a comparison,
//! like the seed's `fail_condition` (`price > 100`).

use std::{fmt, str::FromStr};

use crate::order::{Field, Order};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailWhen {
    field: Field,
    op: Op,
    value: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "invalid rule {input:?}: {why}; expected FIELD OP NUMBER, e.g. 'price>100' (fields: price, quantity; operators: > >= < <= ==)"
)]
pub struct RuleError {
    input: String,
    why: &'static str,
}

impl FromStr for FailWhen {
    type Err = RuleError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |why| RuleError {
            input: input.to_string(),
            why,
        };
        let s: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        // Two-character operators first, so ">=" is not read as ">" then "=100".
        let (pos, op, len) = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
        ]
        .iter()
        .find_map(|(tok, op)| s.find(tok).map(|p| (p, *op, tok.len())))
        .ok_or_else(|| err("no comparison operator"))?;
        let field = match &s[..pos] {
            "price" => Field::Price,
            "quantity" => Field::Quantity,
            "" => return Err(err("missing field")),
            _ => return Err(err("unknown field")),
        };
        let value: f64 = s[pos + len..]
            .parse()
            .map_err(|_| err("right side is not a number"))?;
        if !value.is_finite() {
            return Err(err("right side is not a finite number"));
        }
        Ok(FailWhen { field, op, value })
    }
}

impl fmt::Display for FailWhen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = match self.field {
            Field::Price => "price",
            Field::Quantity => "quantity",
        };
        let op = match self.op {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
        };
        write!(f, "{field}{op}{}", self.value)
    }
}

impl FailWhen {
    /// The simulated failure's reason when the order matches, as the seed words it.
    pub fn check(&self, order: &Order) -> Option<String> {
        let v = order.field(self.field)?;
        let hit = match self.op {
            Op::Gt => v > self.value,
            Op::Ge => v >= self.value,
            Op::Lt => v < self.value,
            Op::Le => v <= self.value,
            Op::Eq => v == self.value,
        };
        hit.then(|| {
            let what = match (self.field, self.op) {
                (Field::Price, Op::Gt | Op::Ge) => "high price".to_string(),
                (Field::Price, Op::Lt | Op::Le) => "low price".to_string(),
                _ => format!("rule {self}"),
            };
            format!("Simulated error: {what}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(price: f64, quantity: i32) -> Order {
        Order {
            order_id: "1".into(),
            user: String::new(),
            product: "p".into(),
            quantity,
            price: Some(price),
            created_at_ms: 0,
        }
    }

    #[test]
    fn parses_and_evaluates() {
        let r: FailWhen = "price>100".parse().unwrap();
        assert_eq!(
            r.check(&order(100.5, 1)).as_deref(),
            Some("Simulated error: high price")
        );
        assert_eq!(r.check(&order(100.0, 1)), None);
        let r: FailWhen = " quantity >= 3 ".parse().unwrap();
        assert!(r.check(&order(1.0, 3)).is_some());
        assert!(r.check(&order(1.0, 2)).is_none());
        let r: FailWhen = "price<=10".parse().unwrap();
        assert!(r.check(&order(10.0, 1)).is_some());
        let r: FailWhen = "quantity==2".parse().unwrap();
        assert_eq!(r.to_string(), "quantity==2");
        assert!(r.check(&order(1.0, 2)).is_some());
    }

    #[test]
    fn bad_rules_say_why() {
        for (bad, why) in [
            ("price", "no comparison operator"),
            ("colour>1", "unknown field"),
            (">1", "missing field"),
            ("price>abc", "right side is not a number"),
            ("price>=", "right side is not a number"),
        ] {
            assert_eq!(bad.parse::<FailWhen>().unwrap_err().why, why, "{bad}");
        }
    }
}
