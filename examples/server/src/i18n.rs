//! Every message a user reads, in Chinese (the default, the seeds' wording where they give one)
//! and English, picked by `Accept-Language`. The API's `code` stays the same in both.

use axum::http::HeaderMap;

/// A language the catalogue speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// 简体中文, the default.
    Zh,
    /// English.
    En,
}

impl Lang {
    /// The first language of `Accept-Language` the catalogue speaks (by quality), Chinese
    /// when none is.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let Some(value) = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
        else {
            return Lang::Zh;
        };
        let mut ranked: Vec<(f32, Lang)> = value
            .split(',')
            .filter_map(|part| {
                let mut bits = part.trim().split(';');
                let tag = bits.next()?.trim().to_ascii_lowercase();
                let q = bits
                    .find_map(|b| b.trim().strip_prefix("q=").map(str::to_owned))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                let lang = if tag.starts_with("zh") {
                    Lang::Zh
                } else if tag.starts_with("en") {
                    Lang::En
                } else {
                    return None;
                };
                Some((q, lang))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranked.first().map_or(Lang::Zh, |(_, l)| *l)
    }
}

/// A message of the catalogue with what it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// The email is not an address.
    EmailInvalid,
    /// The password is too short or lacks letters or digits.
    PasswordWeak,
    /// The confirmation differs.
    PasswordMismatch,
    /// The email has an account.
    EmailTaken,
    /// Wrong email or password.
    BadCredentials,
    /// Too many failed logins: wait this many seconds.
    TooManyAttempts {
        /// Seconds to wait.
        secs: u64,
    },
    /// No session, or an expired one.
    SignInRequired,
    /// The thing does not exist (or is another user's).
    NotFound,
    /// A field is wrong.
    InvalidField {
        /// The request's field.
        field: String,
        /// Why, as the library words it.
        reason: String,
    },
    /// The body is not the JSON expected.
    BadBody {
        /// What the parser said.
        reason: String,
    },
    /// Not enough credits (the seed: "配额不足，本月剩余X个").
    Insufficient {
        /// Credits available.
        available: i64,
        /// Credits the request needs.
        needed: i64,
    },
    /// The daily generation cap is reached.
    DailyCap,
    /// No provider can serve (the seed's maintenance wording).
    ServiceUnavailable,
    /// A service asked us to slow down.
    RateLimited,
    /// The prompt has disallowed terms (the seed: `Prompt包含不当内容: [具体词汇]`).
    Moderation {
        /// The terms.
        terms: Vec<String>,
    },
    /// The state of the thing does not allow it.
    NotAllowed {
        /// Why, as the library words it.
        reason: String,
    },
    /// The user has no YouTube channel connected (the seed: "请先绑定YouTube账号").
    YouTubeNotConnected,
    /// The channel's grant was revoked or expired.
    ReconnectRequired,
    /// YouTube's daily quota is used up until `reset` (RFC 3339).
    YouTubeQuota {
        /// When it resets.
        reset: Option<String>,
    },
    /// A webhook's signature did not verify.
    BadSignature,
    /// A payment event is older than the tolerance.
    StaleEvent,
    /// The admin token is missing or wrong.
    Forbidden,
    /// The body is larger than allowed.
    PayloadTooLarge,
    /// The request took too long.
    Timeout,
    /// The plan is unknown.
    UnknownPlan,
    /// No payment service is configured while real providers are.
    PaymentsUnavailable,
    /// The checkout is unknown or was paid.
    UnknownCheckout,
    /// The email has a password account; Google sign-in does not take it over.
    PasswordAccount,
    /// Google sign-in failed (state, code or account).
    GoogleSignInFailed,
    /// Something failed on our side.
    Internal,
}

impl Msg {
    /// The message in `lang`.
    pub fn render(&self, lang: Lang) -> String {
        use Lang::{En, Zh};
        match (self, lang) {
            (Msg::EmailInvalid, Zh) => "邮箱格式不正确".into(),
            (Msg::EmailInvalid, En) => "That is not a valid email address".into(),
            (Msg::PasswordWeak, Zh) => "密码至少8位，且须同时包含字母和数字".into(),
            (Msg::PasswordWeak, En) => {
                "The password needs at least 8 characters with both letters and digits".into()
            }
            (Msg::PasswordMismatch, Zh) => "两次输入的密码不一致".into(),
            (Msg::PasswordMismatch, En) => "The passwords do not match".into(),
            (Msg::EmailTaken, Zh) => "邮箱已注册".into(),
            (Msg::EmailTaken, En) => "This email is already registered".into(),
            (Msg::BadCredentials, Zh) => "邮箱或密码错误".into(),
            (Msg::BadCredentials, En) => "Wrong email or password".into(),
            (Msg::TooManyAttempts { secs }, Zh) => {
                format!("登录失败次数过多，请 {secs} 秒后再试")
            }
            (Msg::TooManyAttempts { secs }, En) => {
                format!("Too many failed sign-ins; try again in {secs} s")
            }
            (Msg::SignInRequired, Zh) => "请先登录".into(),
            (Msg::SignInRequired, En) => "Please sign in first".into(),
            (Msg::NotFound, Zh) => "找不到该内容".into(),
            (Msg::NotFound, En) => "Not found".into(),
            (Msg::InvalidField { field, reason }, Zh) => format!("参数 {field} 无效：{reason}"),
            (Msg::InvalidField { field, reason }, En) => format!("Invalid {field}: {reason}"),
            (Msg::BadBody { reason }, Zh) => format!("请求内容无法解析：{reason}"),
            (Msg::BadBody { reason }, En) => format!("The request body cannot be read: {reason}"),
            (Msg::Insufficient { available, .. }, Zh) => {
                format!("配额不足，本月剩余{available}个。请升级套餐或等待下月刷新")
            }
            (Msg::Insufficient { available, needed }, En) => format!(
                "Not enough credits: {available} left this month, {needed} needed. \
                 Upgrade your plan or wait for next month's credits"
            ),
            (Msg::DailyCap, Zh) => "今日生成次数已达上限，请明天再试".into(),
            (Msg::DailyCap, En) => {
                "Today's generation limit is reached; please try again tomorrow".into()
            }
            (Msg::ServiceUnavailable, Zh) => "⚠️ 服务暂时不可用\n\nAPI服务商账户余额不足，管理员正在处理中。\n请稍后重试或联系客服。".into(),
            (Msg::ServiceUnavailable, En) => "⚠️ The service is temporarily unavailable\n\nThe video provider's account needs attention and the admin is on it.\nPlease try again later or contact support.".into(),
            (Msg::RateLimited, Zh) => "API调用频率过高，请稍后重试".into(),
            (Msg::RateLimited, En) => "Too many requests; please try again shortly".into(),
            (Msg::Moderation { terms }, Zh) => format!("Prompt包含不当内容: {}", terms.join("、")),
            (Msg::Moderation { terms }, En) => {
                format!("The prompt contains inappropriate content: {}", terms.join(", "))
            }
            (Msg::NotAllowed { reason }, Zh) => format!("当前状态不允许此操作：{reason}"),
            (Msg::NotAllowed { reason }, En) => format!("Not possible now: {reason}"),
            (Msg::YouTubeNotConnected, Zh) => "请先绑定YouTube账号".into(),
            (Msg::YouTubeNotConnected, En) => "Please connect a YouTube account first".into(),
            (Msg::ReconnectRequired, Zh) => "YouTube 授权已失效，请重新绑定账号".into(),
            (Msg::ReconnectRequired, En) => {
                "The YouTube authorisation has expired; please connect the account again".into()
            }
            (Msg::YouTubeQuota { reset }, Zh) => match reset {
                Some(r) => format!("YouTube 今日上传配额已用完，将于 {r} 重置；视频已保留，届时可再次发布"),
                None => "YouTube 今日上传配额已用完，太平洋时间午夜重置；视频已保留".into(),
            },
            (Msg::YouTubeQuota { reset }, En) => match reset {
                Some(r) => format!("YouTube's daily upload quota is used up; it resets at {r}. The video is kept: publish it again then"),
                None => "YouTube's daily upload quota is used up; it resets at midnight Pacific time. The video is kept".into(),
            },
            (Msg::BadSignature, Zh) => "签名校验失败".into(),
            (Msg::BadSignature, En) => "The signature does not verify".into(),
            (Msg::StaleEvent, Zh) => "事件已过期".into(),
            (Msg::StaleEvent, En) => "The event is too old".into(),
            (Msg::Forbidden, Zh) => "无权执行此操作".into(),
            (Msg::Forbidden, En) => "Not allowed".into(),
            (Msg::PayloadTooLarge, Zh) => "请求内容过大".into(),
            (Msg::PayloadTooLarge, En) => "The request is too large".into(),
            (Msg::Timeout, Zh) => "请求超时，请刷新页面重试".into(),
            (Msg::Timeout, En) => "The request timed out; please retry".into(),
            (Msg::UnknownPlan, Zh) => "套餐不存在".into(),
            (Msg::UnknownPlan, En) => "No such plan".into(),
            (Msg::UnknownCheckout, Zh) => "支付会话不存在或已完成".into(),
            (Msg::UnknownCheckout, En) => "The checkout does not exist or was completed".into(),
            (Msg::PasswordAccount, Zh) => "该邮箱已用密码注册，请使用密码登录".into(),
            (Msg::PasswordAccount, En) => {
                "This email has an account with a password: log in with the password".into()
            }
            (Msg::PaymentsUnavailable, Zh) => "支付暂未开通，请联系客服".into(),
            (Msg::PaymentsUnavailable, En) => "Payments are not set up yet; please contact support".into(),
            (Msg::GoogleSignInFailed, Zh) => "Google 登录失败，请重试".into(),
            (Msg::GoogleSignInFailed, En) => "Signing in with Google failed; please retry".into(),
            (Msg::Internal, Zh) => "服务器内部错误，请稍后重试".into(),
            (Msg::Internal, En) => "Something went wrong on our side; please retry".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(value: &str) -> Lang {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::ACCEPT_LANGUAGE,
            value.parse().unwrap_or_else(|_| unreachable!()),
        );
        Lang::from_headers(&h)
    }

    #[test]
    fn accept_language_picks_by_quality_and_defaults_to_chinese() {
        assert_eq!(Lang::from_headers(&HeaderMap::new()), Lang::Zh);
        assert_eq!(lang("en-US,en;q=0.9"), Lang::En);
        assert_eq!(lang("fr-FR, en;q=0.5, zh-CN;q=0.8"), Lang::Zh);
        assert_eq!(lang("de, en;q=0.3"), Lang::En);
        assert_eq!(lang("de"), Lang::Zh);
    }

    #[test]
    fn the_seed_wording_is_kept() {
        assert_eq!(
            Msg::Insufficient {
                available: 3,
                needed: 15
            }
            .render(Lang::Zh),
            "配额不足，本月剩余3个。请升级套餐或等待下月刷新"
        );
        assert!(Msg::ServiceUnavailable
            .render(Lang::Zh)
            .starts_with("⚠️ 服务暂时不可用\n\nAPI服务商账户余额不足，管理员正在处理中。"));
        assert_eq!(Msg::EmailTaken.render(Lang::Zh), "邮箱已注册");
        assert_eq!(
            Msg::Moderation {
                terms: vec!["gore".into()]
            }
            .render(Lang::Zh),
            "Prompt包含不当内容: gore"
        );
    }
}
