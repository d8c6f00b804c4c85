//! The eight charge categories of a bill and the languages a bill is written in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    PlanFee,
    Voice,
    Data,
    Sms,
    Vas,
    Other,
    Discount,
    Adjustment,
}

impl Category {
    /// Bill order: the order categories are listed in on a bill and in exports.
    pub const ALL: [Category; 8] = [
        Category::PlanFee,
        Category::Voice,
        Category::Data,
        Category::Sms,
        Category::Vas,
        Category::Other,
        Category::Discount,
        Category::Adjustment,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Category::PlanFee => "plan_fee",
            Category::Voice => "voice",
            Category::Data => "data",
            Category::Sms => "sms",
            Category::Vas => "vas",
            Category::Other => "other",
            Category::Discount => "discount",
            Category::Adjustment => "adjustment",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn label(self, language: Language) -> &'static str {
        match (language, self) {
            (Language::Zh, Category::PlanFee) => "套餐及固定费",
            (Language::Zh, Category::Voice) => "语音通信费",
            (Language::Zh, Category::Data) => "上网费",
            (Language::Zh, Category::Sms) => "短彩信费",
            (Language::Zh, Category::Vas) => "增值业务费",
            (Language::Zh, Category::Other) => "其他费用",
            (Language::Zh, Category::Discount) => "优惠减免",
            (Language::Zh, Category::Adjustment) => "调账",
            (Language::En, Category::PlanFee) => "Plan and fixed fees",
            (Language::En, Category::Voice) => "Voice",
            (Language::En, Category::Data) => "Data",
            (Language::En, Category::Sms) => "SMS/MMS",
            (Language::En, Category::Vas) => "Value-added services",
            (Language::En, Category::Other) => "Other charges",
            (Language::En, Category::Discount) => "Discounts",
            (Language::En, Category::Adjustment) => "Adjustments",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| format!("unknown category {s:?}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    Zh,
    En,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::Zh, Language::En];

    pub const fn as_str(self) -> &'static str {
        match self {
            Language::Zh => "zh",
            Language::En => "en",
        }
    }
}

impl FromStr for Language {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "zh" => Ok(Language::Zh),
            "en" => Ok(Language::En),
            other => Err(format!("must be zh or en, not {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_round_trips_through_its_name() {
        for category in Category::ALL {
            assert_eq!(category.as_str().parse::<Category>(), Ok(category));
            assert_eq!(Category::ALL[category.index()], category);
        }
        assert!("roaming".parse::<Category>().is_err());
    }

    #[test]
    fn labels_follow_the_contract() {
        assert_eq!(Category::Vas.label(Language::Zh), "增值业务费");
        assert_eq!(Category::Discount.label(Language::En), "Discounts");
    }
}
