//! Signed gossip messages: Fabric's "SignedGossipMessage" (an `Envelope` and its decoded
//! `GossipMessage`), signing, verification and the checks every received message goes through.
//!
//! Everything off the wire is untrusted: sizes are bounded before decoding, the tag must be the
//! one Fabric requires for the content, and signatures are verified (low-S only) with the
//! sender's identity. A rejected message yields a [`BadMessage`] whose [`BadMessage::reason`] is
//! the label counted in `peer_core_gossip_bad_messages_total{reason=…}`.

use std::sync::{Arc, OnceLock};

use prost::Message;
use proto::gossip::gossip_message::{Content, Tag};
use proto::gossip::{Envelope, GossipMessage, Secret, SecretEnvelope, secret};

use crate::msp::identity::{Identity, PkiId};
use crate::msp::{LocalMsp, crypto::VerifyError};

/// Largest envelope accepted for anything but blocks (an alive message with an identity is
/// ~1 KB). Data messages and state transfer responses carry blocks; they get
/// [`block_message_limit`] instead.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// The bound for messages that carry blocks (DataMessage, RemoteStateResponse): the transport's
/// `peer.maxRecvMsgSize` (a block the orderer could send us must be able to travel on), never
/// below [`MAX_PAYLOAD_BYTES`].
pub fn block_message_limit(max_recv_msg_size: usize) -> usize {
    max_recv_msg_size.max(MAX_PAYLOAD_BYTES)
}

/// Signs as this peer. Implemented by the local MSP; tests may implement it for forged keys.
pub trait Signer: Send + Sync {
    fn sign(&self, message: &[u8]) -> Vec<u8>;
    fn pki_id(&self) -> PkiId;
    /// `msp.SerializedIdentity` bytes.
    fn serialized_identity(&self) -> Vec<u8>;
    fn msp_id(&self) -> String;
}

impl Signer for LocalMsp {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        LocalMsp::sign(self, message)
    }
    fn pki_id(&self) -> PkiId {
        LocalMsp::pki_id(self)
    }
    fn serialized_identity(&self) -> Vec<u8> {
        self.identity.serialize()
    }
    fn msp_id(&self) -> String {
        self.identity.msp_id.clone()
    }
}

/// Why a received message was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadMessage {
    /// The envelope is over its limit: [`MAX_PAYLOAD_BYTES`], or the block limit for messages
    /// that carry blocks.
    #[error("message of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// No payload (Fabric: `Empty payload`).
    #[error("Empty payload")]
    EmptyPayload,
    /// The payload is not a `GossipMessage`.
    #[error("payload is not a GossipMessage: {0}")]
    Decode(String),
    /// The content oneof is absent or unknown to us.
    #[error("Unknown message type")]
    UnknownContent,
    /// The tag is not the one Fabric requires for the content.
    #[error("Tag of {} isn't legal: {why}", tag_name(*tag))]
    IllegalTag { tag: i32, why: String },
    /// A message that must be signed is not (Fabric: `Empty signature`).
    #[error("Empty signature")]
    EmptySignature,
    /// The secret envelope has no payload or signature.
    #[error("secret envelope is missing its payload or signature")]
    BadSecret,
    /// A signature with S in the upper half of the order (Fabric rejects these).
    #[error("Invalid S. Must be smaller than half the order")]
    HighS,
    /// The signature does not verify with the sender's identity.
    #[error("Failed verifying signature: {0}")]
    BadSignature(String),
    /// The sender's identity is unknown or invalid.
    #[error("identity rejected: {0}")]
    BadIdentity(String),
    /// The PKI-ID does not match the identity it came with.
    #[error("identity doesn't match the computed pkiID")]
    PkiIdMismatch,
    /// The message is older than (or the same as) one already seen from that peer.
    #[error("stale or duplicate timestamp")]
    Stale,
    /// A message shape that is not valid where it arrived (e.g. not ConnEstablish first).
    #[error("{0}")]
    Unexpected(String),
    /// With TLS, a ConnEstablish whose `tls_cert_hash` is not the certificate seen on the
    /// connection, or a remote that presented none (Fabric's texts).
    #[error("{0}")]
    TlsBinding(String),
}

impl BadMessage {
    /// The metric label for this rejection.
    pub fn reason(&self) -> &'static str {
        match self {
            BadMessage::TooLarge { .. } => "too_large",
            BadMessage::EmptyPayload | BadMessage::Decode(_) => "malformed",
            BadMessage::UnknownContent => "unknown_content",
            BadMessage::IllegalTag { .. } => "illegal_tag",
            BadMessage::EmptySignature | BadMessage::BadSecret => "unsigned",
            BadMessage::HighS => "high_s",
            BadMessage::BadSignature(_) => "bad_signature",
            BadMessage::BadIdentity(_) => "bad_identity",
            BadMessage::PkiIdMismatch => "pki_id_mismatch",
            BadMessage::Stale => "stale",
            BadMessage::Unexpected(_) => "unexpected",
            BadMessage::TlsBinding(_) => "tls_binding",
        }
    }
}

impl From<VerifyError> for BadMessage {
    fn from(err: VerifyError) -> BadMessage {
        match err {
            VerifyError::HighS => BadMessage::HighS,
            other => BadMessage::BadSignature(other.to_string()),
        }
    }
}

/// An envelope with its decoded message.
///
/// Copies share one allocation (cloning is a reference count): a member's alive message is held
/// by the membership store and the emitter and goes out in every transmit that forwards it, and
/// in a simulation thousands of peers hold the same one. The copy without the secret, for other
/// organizations, is made once per message and shared the same way.
#[derive(Clone)]
pub struct SignedMessage(Arc<Parts>);

struct Parts {
    envelope: Envelope,
    message: GossipMessage,
    /// [`SignedMessage::without_secret`], made on first use.
    without_secret: OnceLock<SignedMessage>,
}

impl PartialEq for SignedMessage {
    fn eq(&self, other: &SignedMessage) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || (self.0.envelope == other.0.envelope && self.0.message == other.0.message)
    }
}

impl std::fmt::Debug for SignedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedMessage").field("envelope", &self.0.envelope).field("message", &self.0.message).finish()
    }
}

impl SignedMessage {
    /// Pairs an envelope with its decoded message as given, unchecked: the envelope need not be
    /// the message's encoding (tests build bad messages with it). Messages off the wire go
    /// through [`Self::from_envelope`].
    pub fn from_parts(envelope: Envelope, message: GossipMessage) -> SignedMessage {
        SignedMessage(Arc::new(Parts { envelope, message, without_secret: OnceLock::new() }))
    }

    /// Signs `message` (the encoded message is the signed payload).
    pub fn sign(message: GossipMessage, signer: &dyn Signer) -> SignedMessage {
        let payload = message.encode_to_vec();
        let signature = signer.sign(&payload);
        SignedMessage::from_parts(Envelope { payload, signature, secret_envelope: None }, message)
    }

    /// Fabric's "NoopSign": the payload with an empty signature (membership requests/responses).
    pub fn noop_sign(message: GossipMessage) -> SignedMessage {
        let payload = message.encode_to_vec();
        SignedMessage::from_parts(Envelope { payload, signature: Vec::new(), secret_envelope: None }, message)
    }

    pub fn envelope(&self) -> &Envelope {
        &self.0.envelope
    }

    pub fn message(&self) -> &GossipMessage {
        &self.0.message
    }

    /// The envelope, without copying it if this is the only copy of the message.
    pub fn into_envelope(self) -> Envelope {
        self.into_parts().0
    }

    /// The envelope and the message, without copying them if this is the only copy.
    pub fn into_parts(self) -> (Envelope, GossipMessage) {
        match Arc::try_unwrap(self.0) {
            Ok(parts) => (parts.envelope, parts.message),
            Err(shared) => (shared.envelope.clone(), shared.message.clone()),
        }
    }

    /// Adds a signed secret carrying the internal endpoint.
    pub fn with_internal_endpoint(self, internal_endpoint: &str, signer: &dyn Signer) -> SignedMessage {
        let secret = Secret { content: Some(secret::Content::InternalEndpoint(internal_endpoint.to_string())) };
        let payload = secret.encode_to_vec();
        let signature = signer.sign(&payload);
        let (mut envelope, message) = self.into_parts();
        envelope.secret_envelope = Some(SecretEnvelope { payload, signature });
        SignedMessage::from_parts(envelope, message)
    }

    /// The same message without its secret (for peers of other organizations).
    pub fn without_secret(&self) -> SignedMessage {
        if self.0.envelope.secret_envelope.is_none() {
            return self.clone();
        }
        self.0
            .without_secret
            .get_or_init(|| {
                SignedMessage::from_parts(Envelope { secret_envelope: None, ..self.0.envelope.clone() }, self.0.message.clone())
            })
            .clone()
    }

    /// The internal endpoint from the secret envelope, if any (unverified: see [`Self::verify`]).
    pub fn internal_endpoint(&self) -> Option<String> {
        let secret = self.0.envelope.secret_envelope.as_ref()?;
        match Secret::decode(secret.payload.as_slice()).ok()?.content? {
            secret::Content::InternalEndpoint(endpoint) => Some(endpoint),
        }
    }

    /// Decodes an untrusted envelope: size-bounded, content known, tag legal. Signatures are not
    /// checked here (the signer may not be known yet); call [`Self::verify`].
    pub fn from_envelope(envelope: Envelope) -> Result<SignedMessage, BadMessage> {
        SignedMessage::from_envelope_with_block_limit(envelope, MAX_PAYLOAD_BYTES)
    }

    /// As [`Self::from_envelope`], but messages that carry blocks (data messages, state
    /// responses) may be up to `block_limit` bytes; every other content stays under
    /// [`MAX_PAYLOAD_BYTES`].
    pub fn from_envelope_with_block_limit(envelope: Envelope, block_limit: usize) -> Result<SignedMessage, BadMessage> {
        let size = envelope.payload.len()
            + envelope.signature.len()
            + envelope.secret_envelope.as_ref().map_or(0, |s| s.payload.len() + s.signature.len());
        let limit = block_limit.max(MAX_PAYLOAD_BYTES);
        if size > limit {
            return Err(BadMessage::TooLarge { size, limit });
        }
        if envelope.payload.is_empty() {
            return Err(BadMessage::EmptyPayload);
        }
        let message = GossipMessage::decode(envelope.payload.as_slice()).map_err(|e| BadMessage::Decode(e.to_string()))?;
        let carries_blocks = matches!(message.content, Some(Content::DataMsg(_) | Content::StateResponse(_)));
        if size > MAX_PAYLOAD_BYTES && !carries_blocks {
            return Err(BadMessage::TooLarge { size, limit: MAX_PAYLOAD_BYTES });
        }
        check_tag(&message)?;
        Ok(SignedMessage::from_parts(envelope, message))
    }

    /// Verifies the signature (and the secret's) with the claimed sender's identity.
    pub fn verify(&self, identity: &Identity) -> Result<(), BadMessage> {
        let envelope = &self.0.envelope;
        if envelope.signature.is_empty() {
            return Err(BadMessage::EmptySignature);
        }
        identity.verify(&envelope.payload, &envelope.signature)?;
        if let Some(secret) = &envelope.secret_envelope {
            if secret.payload.is_empty() || secret.signature.is_empty() {
                return Err(BadMessage::BadSecret);
            }
            identity.verify(&secret.payload, &secret.signature)?;
        }
        Ok(())
    }

    pub fn content(&self) -> Option<&Content> {
        self.0.message.content.as_ref()
    }

    /// Whether the message belongs to the channel layer (blocks, state info, state transfer,
    /// leadership), else to membership: how a received message is routed.
    pub fn is_channel_message(&self) -> bool {
        matches!(
            self.content(),
            Some(
                Content::DataMsg(_)
                    | Content::StateInfo(_)
                    | Content::StateInfoPullReq(_)
                    | Content::StateSnapshot(_)
                    | Content::StateRequest(_)
                    | Content::StateResponse(_)
                    | Content::LeadershipMsg(_)
            )
        )
    }
}

/// Fabric's tag legality rules (spec §5.1), for the contents the peer core handles.
fn check_tag(message: &GossipMessage) -> Result<(), BadMessage> {
    let tag = message.tag;
    let Some(content) = &message.content else { return Err(BadMessage::UnknownContent) };
    if tag == Tag::Undefined as i32 {
        return Err(BadMessage::IllegalTag { tag, why: "Undefined tag".into() });
    }
    let required: &[Tag] = match content {
        Content::AliveMsg(_) | Content::MemReq(_) | Content::MemRes(_) | Content::Conn(_) | Content::Empty(_) => &[Tag::Empty],
        Content::DataMsg(_) | Content::LeadershipMsg(_) => &[Tag::ChanAndOrg],
        Content::PeerIdentity(_) => &[Tag::OrgOnly],
        Content::Hello(_) | Content::DataDig(_) | Content::DataReq(_) | Content::DataUpdate(_) => &[Tag::ChanAndOrg, Tag::Empty],
        Content::StateInfo(_)
        | Content::StateSnapshot(_)
        | Content::StateInfoPullReq(_)
        | Content::StateRequest(_)
        | Content::StateResponse(_) => &[Tag::ChanOrOrg],
        Content::Ack(_) | Content::PrivateReq(_) | Content::PrivateRes(_) | Content::PrivateData(_) => return Ok(()),
    };
    if required.iter().any(|t| *t as i32 == tag) {
        Ok(())
    } else {
        let wanted: Vec<&str> = required.iter().map(|t| t.as_str_name()).collect();
        Err(BadMessage::IllegalTag { tag, why: format!("expected {}", wanted.join(" or ")) })
    }
}

/// The tag's name as Fabric prints it (`ORG_ONLY`), or its number if it has none.
fn tag_name(tag: i32) -> String {
    Tag::try_from(tag).map_or_else(|_| tag.to_string(), |t| t.as_str_name().to_string())
}

/// A message with the EMPTY tag and no channel, as membership messages are.
pub fn empty_tag(content: Content, nonce: u64) -> GossipMessage {
    GossipMessage { nonce, channel: Vec::new(), tag: Tag::Empty as i32, content: Some(content) }
}
