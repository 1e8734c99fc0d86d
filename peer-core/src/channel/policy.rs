//! Fabric's channel policies and their evaluation over a set of signatures.
//!
//! Two policy kinds exist in channel configs: signature policies (`SignaturePolicyEnvelope`: a
//! tree of n-out-of gates over principals such as "a peer of Org1MSP") and implicit-meta policies
//! (`ImplicitMetaPolicy`: ANY, ALL or MAJORITY of the same-named policy in every sub-group).
//! Policies are parsed once, when the config is read ([`Policy::parse`]), so a malformed policy
//! is a config error rather than an evaluation surprise.
//!
//! Evaluation follows Fabric's `cauthdsl` and `policies` packages:
//! - a signature set is first reduced to valid signers: identities that deserialize, belong to a
//!   channel MSP, appear for the first time (later duplicates of one identity are dropped before
//!   any signature check) and whose ECDSA P-256 signature verifies (high-S rejected);
//! - a gate tries each of its rules in order; a `signed_by` leaf consumes the first unused signer
//!   that satisfies its principal, so one signature never counts twice;
//! - an implicit-meta policy over no sub-groups is satisfied by anything (Fabric's threshold is
//!   then 0), and a sub-group lacking the named policy counts as a policy that rejects.
//!
//! Principal checks use the MSP's validation with expiry ignored, as Fabric's MSP does. Not
//! supported: idemix identities (they fail to deserialize and are dropped).

use prost::Message;
use proto::common::{
    CombinedPrincipal, ImplicitMetaPolicy, MspIdentityAnonymity, MspPrincipal, MspRole, OrganizationUnit, SignaturePolicy as ProtoRule,
    SignaturePolicyEnvelope,
};

use crate::msp::{Identity, Msp, Role};

/// One signature to evaluate: the signed bytes, the signer's serialized identity
/// (`msp.SerializedIdentity`) and the DER ECDSA signature. Fabric's `protoutil.SignedData`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedData {
    pub data: Vec<u8>,
    pub identity: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Why a policy was not satisfied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The path names no policy in the channel config.
    #[error("policy {path} does not exist in channel [{channel}]")]
    NotFound { channel: String, path: String },
    /// The policy exists but the signatures do not satisfy it.
    #[error("policy {path} of channel [{channel}] is not satisfied: {reason}")]
    NotSatisfied { channel: String, path: String, reason: String },
}

/// A parsed policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    Signature(SignaturePolicy),
    ImplicitMeta { sub_policy: String, rule: ImplicitMetaRule },
}

/// How many sub-policies an implicit-meta policy needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImplicitMetaRule {
    Any,
    All,
    Majority,
}

impl ImplicitMetaRule {
    /// The number of satisfied sub-policies needed out of `count` (0 when there are none).
    pub fn threshold(self, count: usize) -> usize {
        if count == 0 {
            return 0;
        }
        match self {
            ImplicitMetaRule::Any => 1,
            ImplicitMetaRule::All => count,
            ImplicitMetaRule::Majority => count / 2 + 1,
        }
    }
}

/// A signature policy: a rule tree over a list of principals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignaturePolicy {
    rule: Rule,
    principals: Vec<Principal>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    SignedBy(usize),
    NOutOf { n: i32, rules: Vec<Rule> },
}

/// Who may satisfy a `signed_by` leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// `MSPRole`: a member (role `None`), admin, client, peer or orderer of an MSP.
    Role { msp_id: String, role: Option<Role> },
    /// Exactly this certificate (DER) of this MSP.
    Identity { msp_id: String, cert_der: Vec<u8> },
    /// A valid member of the MSP carrying this OU, certified by the chain with this identifier.
    OrganizationUnit { msp_id: String, ou: String, certifiers: Vec<u8> },
    /// `MSPIdentityAnonymity`: X.509 identities are always nominal, never anonymous.
    Anonymity { anonymous: bool },
    /// Every listed principal, satisfied by the same identity.
    Combined(Vec<Principal>),
}

/// Deepest nesting of combined principals accepted (each level is a separate decode, so prost's
/// recursion limit does not bound it).
const MAX_COMBINED_DEPTH: usize = 8;

impl Policy {
    /// Parses a `common.Policy` (types SIGNATURE and IMPLICIT_META; Fabric's channel configs use
    /// no other).
    pub fn parse(policy: &proto::common::Policy) -> Result<Policy, String> {
        use proto::common::policy::PolicyType;
        match PolicyType::try_from(policy.r#type) {
            Ok(PolicyType::Signature) => {
                let envelope = SignaturePolicyEnvelope::decode(policy.value.as_slice())
                    .map_err(|e| format!("cannot decode SignaturePolicyEnvelope: {e}"))?;
                SignaturePolicy::from_envelope(&envelope).map(Policy::Signature)
            }
            Ok(PolicyType::ImplicitMeta) => {
                let meta =
                    ImplicitMetaPolicy::decode(policy.value.as_slice()).map_err(|e| format!("cannot decode ImplicitMetaPolicy: {e}"))?;
                use proto::common::implicit_meta_policy::Rule as R;
                let rule = match R::try_from(meta.rule) {
                    Ok(R::Any) => ImplicitMetaRule::Any,
                    Ok(R::All) => ImplicitMetaRule::All,
                    Ok(R::Majority) => ImplicitMetaRule::Majority,
                    Err(_) => return Err(format!("unknown implicit meta rule {}", meta.rule)),
                };
                if meta.sub_policy.is_empty() {
                    return Err("implicit meta policy names no sub-policy".into());
                }
                Ok(Policy::ImplicitMeta { sub_policy: meta.sub_policy, rule })
            }
            _ => Err(format!("unsupported policy type {} (peer-core reads SIGNATURE and IMPLICIT_META policies)", policy.r#type)),
        }
    }
}

impl SignaturePolicy {
    /// Parses a `SignaturePolicyEnvelope`, checking every `signed_by` index.
    pub fn from_envelope(envelope: &SignaturePolicyEnvelope) -> Result<SignaturePolicy, String> {
        let principals = envelope
            .identities
            .iter()
            .enumerate()
            .map(|(i, p)| Principal::parse(p, 0).map_err(|e| format!("identities[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let rule = envelope.rule.as_ref().ok_or("the signature policy has no rule")?;
        let rule = compile(rule, principals.len())?;
        Ok(SignaturePolicy { rule, principals })
    }

    /// Evaluates over already-verified signers (each at most once).
    fn satisfied_by(&self, signers: &[Signer<'_>]) -> bool {
        let mut used = vec![false; signers.len()];
        self.rule.evaluate(&self.principals, signers, &mut used)
    }
}

fn compile(rule: &ProtoRule, principal_count: usize) -> Result<Rule, String> {
    use proto::common::signature_policy::Type;
    match &rule.r#type {
        None => Err("empty policy element".into()),
        Some(Type::SignedBy(index)) => match usize::try_from(*index) {
            Ok(index) if index < principal_count => Ok(Rule::SignedBy(index)),
            _ => Err(format!("identity index out of range, requested {index}, but identities length is {principal_count}")),
        },
        Some(Type::NOutOf(gate)) => {
            Ok(Rule::NOutOf { n: gate.n, rules: gate.rules.iter().map(|r| compile(r, principal_count)).collect::<Result<_, _>>()? })
        }
    }
}

impl Rule {
    /// Fabric's gate semantics: every sub-rule is tried in order against a scratch copy of the
    /// used flags, and the flags a successful sub-rule consumed are kept.
    fn evaluate(&self, principals: &[Principal], signers: &[Signer<'_>], used: &mut [bool]) -> bool {
        match self {
            Rule::SignedBy(index) => {
                let principal = &principals[*index];
                for (i, signer) in signers.iter().enumerate() {
                    if !used[i] && principal.satisfied_by(signer.identity, signer.msp).is_ok() {
                        used[i] = true;
                        return true;
                    }
                }
                false
            }
            Rule::NOutOf { n, rules } => {
                let mut verified: i64 = 0;
                let mut scratch = used.to_vec();
                for rule in rules {
                    scratch.copy_from_slice(used);
                    if rule.evaluate(principals, signers, &mut scratch) {
                        verified += 1;
                        used.copy_from_slice(&scratch);
                    }
                }
                verified >= i64::from(*n)
            }
        }
    }
}

impl Principal {
    fn parse(principal: &MspPrincipal, depth: usize) -> Result<Principal, String> {
        use proto::common::msp_principal::Classification;
        let bytes = principal.principal.as_slice();
        match Classification::try_from(principal.principal_classification) {
            Ok(Classification::Role) => {
                let role = MspRole::decode(bytes).map_err(|e| format!("cannot decode MSPRole: {e}"))?;
                use proto::common::msp_role::MspRoleType as T;
                let kind = match T::try_from(role.role) {
                    Ok(T::Member) => None,
                    Ok(T::Admin) => Some(Role::Admin),
                    Ok(T::Client) => Some(Role::Client),
                    Ok(T::Peer) => Some(Role::Peer),
                    Ok(T::Orderer) => Some(Role::Orderer),
                    Err(_) => return Err(format!("invalid MSP role type {}", role.role)),
                };
                Ok(Principal::Role { msp_id: role.msp_identifier, role: kind })
            }
            Ok(Classification::Identity) => {
                let identity = Identity::deserialize(bytes).map_err(|e| format!("invalid identity principal: {e}"))?;
                Ok(Principal::Identity { cert_der: identity.cert_der(), msp_id: identity.msp_id })
            }
            Ok(Classification::OrganizationUnit) => {
                let ou = OrganizationUnit::decode(bytes).map_err(|e| format!("cannot decode OrganizationUnit: {e}"))?;
                Ok(Principal::OrganizationUnit {
                    msp_id: ou.msp_identifier,
                    ou: ou.organizational_unit_identifier,
                    certifiers: ou.certifiers_identifier,
                })
            }
            Ok(Classification::Anonymity) => {
                let anonymity = MspIdentityAnonymity::decode(bytes).map_err(|e| format!("cannot decode MSPIdentityAnonymity: {e}"))?;
                use proto::common::msp_identity_anonymity::MspIdentityAnonymityType as A;
                match A::try_from(anonymity.anonymity_type) {
                    Ok(A::Nominal) => Ok(Principal::Anonymity { anonymous: false }),
                    Ok(A::Anonymous) => Ok(Principal::Anonymity { anonymous: true }),
                    Err(_) => Err(format!("unknown principal anonymity type {}", anonymity.anonymity_type)),
                }
            }
            Ok(Classification::Combined) => {
                if depth >= MAX_COMBINED_DEPTH {
                    return Err(format!("combined principals nested deeper than {MAX_COMBINED_DEPTH}"));
                }
                let combined = CombinedPrincipal::decode(bytes).map_err(|e| format!("cannot decode CombinedPrincipal: {e}"))?;
                if combined.principals.is_empty() {
                    return Err("a combined principal must have at least one principal".into());
                }
                combined.principals.iter().map(|p| Principal::parse(p, depth + 1)).collect::<Result<_, _>>().map(Principal::Combined)
            }
            Err(_) => Err(format!("invalid principal type {}", principal.principal_classification)),
        }
    }

    /// Whether a signer (already known to be a well-formed identity of `msp`) satisfies this
    /// principal; the error says why not.
    pub fn satisfied_by(&self, identity: &Identity, msp: &Msp) -> Result<(), String> {
        let same_msp = |msp_id: &str| {
            if msp_id == identity.msp_id {
                Ok(())
            } else {
                Err(format!("the identity is a member of a different MSP (expected {msp_id}, got {})", identity.msp_id))
            }
        };
        match self {
            Principal::Role { msp_id, role } => {
                same_msp(msp_id)?;
                msp.satisfies_role(identity, *role)
            }
            Principal::Identity { msp_id, cert_der } => {
                same_msp(msp_id)?;
                if identity.cert_der() != *cert_der {
                    return Err("the identities do not match".into());
                }
                msp.validate_ignoring_expiry(identity)
            }
            Principal::OrganizationUnit { msp_id, ou, certifiers } => {
                same_msp(msp_id)?;
                msp.validate_ignoring_expiry(identity)?;
                let chain_id = msp.certifiers_identifier(identity)?;
                if identity.organizational_units().contains(ou) && chain_id.as_slice() == certifiers.as_slice() {
                    Ok(())
                } else {
                    Err("the identities do not match".into())
                }
            }
            Principal::Anonymity { anonymous: true } => {
                Err("principal is anonymous, but X.509 MSP does not support anonymous identities".into())
            }
            Principal::Anonymity { anonymous: false } => Ok(()),
            Principal::Combined(all) => all.iter().try_for_each(|p| p.satisfied_by(identity, msp)),
        }
    }
}

/// A signer whose signature verified: the identity and the channel MSP it belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Signer<'a> {
    pub identity: &'a Identity,
    pub msp: &'a Msp,
}

/// Fabric's `SignatureSetToValidIdentities`: deserialize each signer, find its MSP, drop repeated
/// identities before checking their signature, verify. Returns the survivors and, for messages,
/// why the others were dropped.
pub(crate) fn valid_signers<'m>(
    signed: &[SignedData],
    msp_of: impl Fn(&str) -> Option<&'m Msp>,
) -> (Vec<(Identity, &'m Msp)>, Vec<String>) {
    let mut seen: std::collections::BTreeSet<(String, Vec<u8>)> = std::collections::BTreeSet::new();
    let mut signers = Vec::new();
    let mut dropped = Vec::new();
    for (i, item) in signed.iter().enumerate() {
        let identity = match Identity::deserialize(&item.identity) {
            Ok(identity) => identity,
            Err(e) => {
                dropped.push(format!("signature {i}: {e}"));
                continue;
            }
        };
        let Some(msp) = msp_of(&identity.msp_id) else {
            dropped.push(format!("signature {i}: MSP {} is not a member of the channel", identity.msp_id));
            continue;
        };
        let key = (identity.msp_id.clone(), identity.cert_der());
        if seen.contains(&key) {
            dropped.push(format!("signature {i}: identity {identity:?} already signed"));
            continue;
        }
        if let Err(e) = identity.verify(&item.data, &item.signature) {
            dropped.push(format!("signature {i} by {identity:?}: {e}"));
            continue;
        }
        seen.insert(key);
        signers.push((identity, msp));
    }
    (signers, dropped)
}

/// Evaluates a signature policy over a signature set; the error explains the shortfall.
pub(crate) fn evaluate_signature_policy<'m>(
    policy: &SignaturePolicy,
    signed: &[SignedData],
    msp_of: impl Fn(&str) -> Option<&'m Msp>,
) -> Result<(), String> {
    let (owned, dropped) = valid_signers(signed, msp_of);
    let signers: Vec<Signer<'_>> = owned.iter().map(|(identity, msp)| Signer { identity, msp }).collect();
    if policy.satisfied_by(&signers) {
        return Ok(());
    }
    let mut reason = format!(
        "signature set did not satisfy policy ({} valid signature(s){})",
        signers.len(),
        if signers.is_empty() { String::new() } else { format!(" from {:?}", owned.iter().map(|(i, _)| i).collect::<Vec<_>>()) }
    );
    if !dropped.is_empty() {
        reason.push_str("; ignored: ");
        reason.push_str(&dropped.join("; "));
    }
    Err(reason)
}
