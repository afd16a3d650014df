//! Deterministic, plausible data for the demo services: the same id always
//! gives the same user, order, product or review.

use serde_json::{Value, json};

/// Users have ids `1..=USERS`.
pub(crate) const USERS: u64 = 1000;
/// Products have ids `1..=PRODUCTS`.
pub(crate) const PRODUCTS: u64 = 500;

const FIRST: [&str; 16] = [
    "Ada", "Bruno", "Chiara", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ivo", "Jade", "Kenji",
    "Lena", "Mateo", "Nia", "Oskar", "Priya",
];
const LAST: [&str; 16] = [
    "Moreau", "Okafor", "Rossi", "Ivanova", "Yilmaz", "Haddad", "Novak", "Sato", "Petrov",
    "Dubois", "Tanaka", "Fischer", "Garcia", "Mensah", "Berg", "Iyer",
];
const CITIES: [&str; 8] = [
    "Lyon", "Porto", "Osaka", "Accra", "Tallinn", "Valencia", "Leeds", "Pune",
];
const LEVELS: [&str; 4] = ["Bronze", "Silver", "Gold", "Platinum"];
const ADJECTIVES: [&str; 12] = [
    "Compact",
    "Wireless",
    "Ergonomic",
    "Recycled",
    "Classic",
    "Foldable",
    "Smart",
    "Vintage",
    "Waterproof",
    "Handmade",
    "Ultralight",
    "Modular",
];
const NOUNS: [(&str, &str); 12] = [
    ("Headphones", "audio"),
    ("Desk Lamp", "home"),
    ("Backpack", "travel"),
    ("Coffee Grinder", "kitchen"),
    ("Keyboard", "computing"),
    ("Running Shoes", "sport"),
    ("Water Bottle", "sport"),
    ("Notebook", "office"),
    ("Speaker", "audio"),
    ("Tent", "outdoor"),
    ("Monitor Stand", "computing"),
    ("Teapot", "kitchen"),
];
const ORDER_STATUS: [&str; 5] = [
    "delivered",
    "delivered",
    "shipped",
    "processing",
    "cancelled",
];
const REVIEW_TITLES: [&str; 8] = [
    "Does what it says",
    "Better than expected",
    "Good value",
    "Would buy again",
    "Arrived late but works",
    "Not for me",
    "Solid build quality",
    "Five stars from my cat",
];
const NOTIFICATIONS: [(&str, &str); 6] = [
    ("promotion", "Weekend sale: 20% off audio"),
    ("order", "Your order has shipped"),
    ("update", "We updated our privacy policy"),
    ("promotion", "Double points on kitchen items"),
    ("order", "Your order was delivered"),
    ("reward", "You reached a new reward tier"),
];

/// SplitMix64 finaliser: a deterministic hash of `(salt, id, k)`.
fn h(salt: u64, id: u64, k: u64) -> u64 {
    let mut z = salt
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(id.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(k.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<T: Copy>(list: &[T], x: u64) -> T {
    list[usize::try_from(x % list.len() as u64).unwrap_or(0)]
}

/// Cents as a JSON number with two decimals.
#[allow(clippy::cast_precision_loss)] // prices are far below 2^53 cents
fn money(cents: u64) -> Value {
    json!((cents as f64) / 100.0)
}

pub(crate) fn user(id: u64) -> Value {
    let first = pick(&FIRST, h(1, id, 0));
    let last = pick(&LAST, h(1, id, 1));
    json!({
        "id": id,
        "name": format!("{first} {last}"),
        "email": format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase(), id),
        "city": pick(&CITIES, h(1, id, 2)),
        "level": pick(&LEVELS, h(1, id, 3)),
        "member_since": 2014 + h(1, id, 4) % 11,
    })
}

pub(crate) fn product(id: u64) -> Value {
    let adjective = pick(&ADJECTIVES, h(2, id, 0));
    let (noun, category) = pick(&NOUNS, h(2, id, 1));
    let reviews = reviews_for(id);
    json!({
        "id": id,
        "name": format!("{adjective} {noun}"),
        "category": category,
        "price": money(price_cents(id)),
        "stock": h(2, id, 3) % 250,
        "average_rating": reviews["average_rating"],
    })
}

fn price_cents(product: u64) -> u64 {
    499 + h(2, product, 2) % 30_000
}

fn order(user_id: u64, n: u64) -> Value {
    let order_id = user_id * 100 + n;
    let lines = 1 + h(3, order_id, 0) % 4;
    let mut total = 0;
    let items: Vec<Value> = (0..lines)
        .map(|l| {
            let product_id = 1 + h(3, order_id, 10 + l) % PRODUCTS;
            let quantity = 1 + h(3, order_id, 20 + l) % 3;
            let unit = price_cents(product_id);
            total += unit * quantity;
            json!({ "product_id": product_id, "quantity": quantity, "unit_price": money(unit) })
        })
        .collect();
    let day = h(3, order_id, 1) % 28 + 1;
    let month = h(3, order_id, 2) % 12 + 1;
    json!({
        "id": order_id,
        "user_id": user_id,
        "placed_on": format!("2025-{month:02}-{day:02}"),
        "status": pick(&ORDER_STATUS, h(3, order_id, 3)),
        "items": items,
        "total": money(total),
    })
}

pub(crate) fn order_by_id(order_id: u64) -> Option<Value> {
    let (user_id, n) = (order_id / 100, order_id % 100);
    (user_exists(user_id) && n < orders_count(user_id)).then(|| order(user_id, n))
}

fn orders_count(user_id: u64) -> u64 {
    h(3, user_id, 99) % 16
}

pub(crate) fn orders_of(user_id: u64) -> Value {
    let orders: Vec<Value> = (0..orders_count(user_id))
        .map(|n| order(user_id, n))
        .collect();
    let spent: f64 = orders
        .iter()
        .filter(|o| o["status"] != "cancelled")
        .filter_map(|o| o["total"].as_f64())
        .sum();
    let pending = orders
        .iter()
        .filter(|o| o["status"] == "processing" || o["status"] == "shipped")
        .count();
    json!({
        "user_id": user_id,
        "count": orders.len(),
        "pending": pending,
        "total_spent": (spent * 100.0).round() / 100.0,
        "orders": orders,
    })
}

pub(crate) fn reviews_for(product_id: u64) -> Value {
    let n = h(4, product_id, 0) % 9;
    let reviews: Vec<Value> = (0..n)
        .map(|i| {
            let id = product_id * 100 + i;
            json!({
                "id": id,
                "product_id": product_id,
                "user_id": 1 + h(4, id, 1) % USERS,
                "rating": 1 + (h(4, id, 2) % 5).max(h(4, id, 3) % 5),
                "title": pick(&REVIEW_TITLES, h(4, id, 4)),
                "helpful_votes": h(4, id, 5) % 40,
            })
        })
        .collect();
    let sum: u64 = reviews.iter().filter_map(|r| r["rating"].as_u64()).sum();
    #[allow(clippy::cast_precision_loss)]
    let average = if n == 0 {
        Value::Null
    } else {
        json!(((sum as f64 / n as f64) * 10.0).round() / 10.0)
    };
    json!({ "product_id": product_id, "count": n, "average_rating": average, "reviews": reviews })
}

pub(crate) fn reviews_by(user_id: u64) -> Value {
    let written = h(5, user_id, 0) % 12;
    #[allow(clippy::cast_precision_loss)]
    let average = if written == 0 {
        Value::Null
    } else {
        json!(((25 + h(5, user_id, 1) % 25) as f64) / 10.0)
    };
    json!({
        "user_id": user_id,
        "written": written,
        "average_rating": average,
        "helpful_votes": h(5, user_id, 2) % 60,
    })
}

pub(crate) fn rewards(user_id: u64) -> Value {
    let points = h(6, user_id, 0) % 5000;
    let tier = match points {
        0..=999 => "Bronze",
        1000..=2499 => "Silver",
        2500..=3999 => "Gold",
        _ => "Platinum",
    };
    json!({
        "user_id": user_id,
        "points": points,
        "tier": tier,
        "expiring_points": points / 5,
        "expires_on": format!("2026-{:02}-01", h(6, user_id, 1) % 12 + 1),
    })
}

/// Four products picked for `user_id` (distinct, deterministic).
pub(crate) fn recommendations(user_id: u64) -> Value {
    let mut ids: Vec<u64> = Vec::with_capacity(4);
    let mut k = 0;
    while ids.len() < 4 {
        let id = 1 + h(8, user_id, k) % PRODUCTS;
        if !ids.contains(&id) {
            ids.push(id);
        }
        k += 1;
    }
    let items: Vec<Value> = ids.into_iter().map(product).collect();
    json!({ "user_id": user_id, "items": items })
}

pub(crate) fn notifications(user_id: u64) -> Value {
    let n = h(7, user_id, 0) % 8;
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let (kind, text) = pick(&NOTIFICATIONS, h(7, user_id, 10 + i));
            json!({ "id": user_id * 100 + i, "kind": kind, "text": text, "read": h(7, user_id, 20 + i).is_multiple_of(3) })
        })
        .collect();
    let unread = items.iter().filter(|i| i["read"] == false).count();
    let count = |k: &str| items.iter().filter(|i| i["kind"] == k).count();
    json!({
        "user_id": user_id,
        "unread": unread,
        "promotions": count("promotion"),
        "updates": count("update") + count("order") + count("reward"),
        "items": items,
    })
}

pub(crate) const fn user_exists(id: u64) -> bool {
    id >= 1 && id <= USERS
}

pub(crate) const fn product_exists(id: u64) -> bool {
    id >= 1 && id <= PRODUCTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_deterministic_and_consistent() {
        assert_eq!(user(7), user(7));
        assert_ne!(user(7), user(8));
        let orders = orders_of(42);
        let count = orders["count"].as_u64().unwrap();
        assert_eq!(orders["orders"].as_array().unwrap().len() as u64, count);
        for o in orders["orders"].as_array().unwrap() {
            let id = o["id"].as_u64().unwrap();
            assert_eq!(order_by_id(id).as_ref(), Some(o));
            for item in o["items"].as_array().unwrap() {
                assert!(product_exists(item["product_id"].as_u64().unwrap()));
            }
        }
        let r = reviews_for(3);
        for review in r["reviews"].as_array().unwrap() {
            let rating = review["rating"].as_u64().unwrap();
            assert!((1..=5).contains(&rating));
        }
        assert!(notifications(5)["unread"].as_u64().unwrap() <= 8);
        let picked = recommendations(9);
        let ids: Vec<u64> = picked["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().all(|id| product_exists(*id)));
        assert!(ids.iter().enumerate().all(|(i, id)| !ids[..i].contains(id)));
        assert_eq!(picked, recommendations(9));
    }
}
