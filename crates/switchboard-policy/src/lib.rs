//! The permission decision: may the assistant call this function now, must it ask, or not at all?
//!
//! Architecture invariant: pure and synchronous. [`decide`] looks only at its input, performs no
//! IO and never fails, so every combination can be tested in a table and the same answer is
//! given wherever it is asked (the chat loop, a direct call, Switchboard's own MCP endpoint).
//!
//! Every [`Decision`] carries the [`Rule`] that made it, so the UI and the audit log can say
//! *why* a call was allowed, asked or refused.

use serde::{Deserialize, Serialize};
use switchboard_domain::{FloorPolicy, MemberPreference, ReviewState};

/// What the caller must do with the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Call it.
    Allow,
    /// Ask the member first.
    Ask,
    /// Do not call it.
    Deny,
}

/// The rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The connector is disabled or not active.
    ConnectorUnavailable,
    /// The server no longer offers the function.
    FunctionRemoved,
    /// A new function waits for an admin's first review.
    PendingReview,
    /// The definition changed since an admin approved it.
    ChangedSinceApproval,
    /// The admin blocked the function.
    AdminBlocked,
    /// The member chose never to call it.
    MemberNever,
    /// The admin requires asking before every call.
    AdminAsks,
    /// The member chose to be asked.
    MemberAsks,
    /// The member has not chosen, and asking is the default.
    DefaultAsk,
    /// Untrusted content entered the conversation and the function may change something, so
    /// the organization's strict setting asks even though the member chose "always allow".
    UntrustedContent,
    /// The member chose "always allow" and the admin permits it.
    MemberAlways,
}

impl Rule {
    /// The rule in plain words, as the member is told it ("… because {words}").
    pub fn words(self) -> &'static str {
        use Rule::*;
        match self {
            ConnectorUnavailable => "the connector is not active",
            FunctionRemoved => "the server no longer offers it",
            PendingReview => "it is new and waits for an admin's review",
            ChangedSinceApproval => {
                "its definition changed since it was approved and waits for an admin's review"
            }
            AdminBlocked => "an admin blocked it",
            MemberNever => "you chose never to allow it",
            AdminAsks => "an admin requires asking first",
            MemberAsks => "you chose to be asked first",
            DefaultAsk => "asking first is the default",
            UntrustedContent => {
                "tool output entered this conversation and the function may change something"
            }
            MemberAlways => "you always allow it",
        }
    }
}

/// A decision and the rule that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// What to do.
    pub outcome: Outcome,
    /// Why.
    pub rule: Rule,
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    /// Whether the connector is enabled and active.
    pub connector_available: bool,
    /// The function's review state.
    pub review: ReviewState,
    /// The admin's floor.
    pub floor: FloorPolicy,
    /// The member's preference, if they chose one.
    pub preference: Option<MemberPreference>,
    /// What the conversation the call comes from has taken in.
    pub context: Context,
}

/// What the conversation a call comes from has taken in, and how the organization treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Context {
    /// Nothing untrusted, or a call made by hand rather than by the model.
    #[default]
    Clean,
    /// Tool output entered the conversation, and the organization's setting is strict: a
    /// function not annotated read-only is asked, whatever the member chose.
    Untrusted {
        /// Whether the function says it changes nothing (its `readOnlyHint`).
        read_only: bool,
    },
}

/// Decides. The stricter of the two layers wins; a function that is removed, held for review or
/// on an unavailable connector is never callable, whatever either layer says.
pub fn decide(input: Input) -> Decision {
    use Outcome::*;
    let d = |outcome, rule| Decision { outcome, rule };
    if !input.connector_available {
        return d(Deny, Rule::ConnectorUnavailable);
    }
    match input.review {
        ReviewState::Removed => return d(Deny, Rule::FunctionRemoved),
        ReviewState::Pending => return d(Deny, Rule::PendingReview),
        ReviewState::Changed => return d(Deny, Rule::ChangedSinceApproval),
        ReviewState::Approved => {}
    }
    match (input.floor, input.preference) {
        (FloorPolicy::Blocked, _) => d(Deny, Rule::AdminBlocked),
        (_, Some(MemberPreference::Never)) => d(Deny, Rule::MemberNever),
        (FloorPolicy::Ask, _) => d(Ask, Rule::AdminAsks),
        (FloorPolicy::Allowed, Some(MemberPreference::Ask)) => d(Ask, Rule::MemberAsks),
        (FloorPolicy::Allowed, None) => d(Ask, Rule::DefaultAsk),
        (FloorPolicy::Allowed, Some(MemberPreference::Always)) => match input.context {
            Context::Untrusted { read_only: false } => d(Ask, Rule::UntrustedContent),
            Context::Clean | Context::Untrusted { read_only: true } => d(Allow, Rule::MemberAlways),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FloorPolicy as F;
    use MemberPreference as P;
    use Outcome::*;
    use ReviewState as R;

    fn input(review: R, floor: F, preference: Option<P>) -> Input {
        Input {
            connector_available: true,
            review,
            floor,
            preference,
            context: Context::Clean,
        }
    }

    /// Under untrusted content, only a member's "always" on a function that may change
    /// something is turned into a question; every other decision stays as it was.
    #[test]
    fn untrusted_content_asks_before_functions_that_may_change_something() {
        let prefs = [None, Some(P::Always), Some(P::Ask), Some(P::Never)];
        for &review in R::ALL {
            for &floor in F::ALL {
                for pref in prefs {
                    let clean = decide(input(review, floor, pref));
                    for read_only in [false, true] {
                        let mut tainted = input(review, floor, pref);
                        tainted.context = Context::Untrusted { read_only };
                        let got = decide(tainted);
                        if clean.rule == Rule::MemberAlways && !read_only {
                            assert_eq!(
                                got,
                                Decision {
                                    outcome: Ask,
                                    rule: Rule::UntrustedContent
                                }
                            );
                        } else {
                            assert_eq!(
                                got, clean,
                                "{review:?} {floor} {pref:?} read_only={read_only}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Every floor × preference combination on an approved function.
    #[test]
    fn layers_table() {
        let table: &[(F, Option<P>, Outcome, Rule)] = &[
            (F::Allowed, None, Ask, Rule::DefaultAsk),
            (F::Allowed, Some(P::Always), Allow, Rule::MemberAlways),
            (F::Allowed, Some(P::Ask), Ask, Rule::MemberAsks),
            (F::Allowed, Some(P::Never), Deny, Rule::MemberNever),
            (F::Ask, None, Ask, Rule::AdminAsks),
            (F::Ask, Some(P::Always), Ask, Rule::AdminAsks),
            (F::Ask, Some(P::Ask), Ask, Rule::AdminAsks),
            (F::Ask, Some(P::Never), Deny, Rule::MemberNever),
            (F::Blocked, None, Deny, Rule::AdminBlocked),
            (F::Blocked, Some(P::Always), Deny, Rule::AdminBlocked),
            (F::Blocked, Some(P::Ask), Deny, Rule::AdminBlocked),
            (F::Blocked, Some(P::Never), Deny, Rule::AdminBlocked),
        ];
        assert_eq!(
            table.len(),
            F::ALL.len() * (P::ALL.len() + 1),
            "table covers every pair"
        );
        for &(floor, pref, outcome, rule) in table {
            let got = decide(input(R::Approved, floor, pref));
            assert_eq!(
                got,
                Decision { outcome, rule },
                "floor {floor} preference {pref:?}"
            );
        }
    }

    /// A function that is not approved, or a connector that is unavailable, is never callable,
    /// whatever the two layers say.
    #[test]
    fn held_removed_and_unavailable_are_never_callable() {
        let prefs = [None, Some(P::Always), Some(P::Ask), Some(P::Never)];
        for &review in R::ALL {
            for &floor in F::ALL {
                for pref in prefs {
                    let got = decide(input(review, floor, pref));
                    let expected_rule = match review {
                        R::Approved => continue,
                        R::Pending => Rule::PendingReview,
                        R::Changed => Rule::ChangedSinceApproval,
                        R::Removed => Rule::FunctionRemoved,
                    };
                    assert_eq!(
                        got,
                        Decision {
                            outcome: Deny,
                            rule: expected_rule
                        }
                    );
                    let mut off = input(R::Approved, floor, pref);
                    off.connector_available = false;
                    assert_eq!(decide(off).rule, Rule::ConnectorUnavailable);
                }
            }
        }
    }

    /// The stricter layer always wins: the outcome is never more permissive than either layer
    /// taken alone.
    #[test]
    fn stricter_layer_wins() {
        fn rank(o: Outcome) -> u8 {
            match o {
                Allow => 0,
                Ask => 1,
                Deny => 2,
            }
        }
        for &floor in F::ALL {
            for &pref in P::ALL {
                let floor_alone = match floor {
                    F::Allowed => Allow,
                    F::Ask => Ask,
                    F::Blocked => Deny,
                };
                let pref_alone = match pref {
                    P::Always => Allow,
                    P::Ask => Ask,
                    P::Never => Deny,
                };
                let got = decide(input(R::Approved, floor, Some(pref))).outcome;
                assert_eq!(rank(got), rank(floor_alone).max(rank(pref_alone)));
            }
        }
    }
}
