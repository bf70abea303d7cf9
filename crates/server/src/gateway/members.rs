//! Cache of conversation members.
//!
//! Membership never changes after a conversation is created (the protocol
//! has no add/remove), so an entry never goes stale and needs no
//! invalidation. Unknown conversations are not cached: ids come from the
//! server, and a miss costs one indexed read.

use crate::store::ServerStore;
use crate::ServerError;
use chatsync_protocol::{ConversationId, UserId};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Members of each conversation seen so far.
#[derive(Default)]
pub struct MembersCache {
    map: RwLock<HashMap<ConversationId, Arc<[UserId]>>>,
}

/// What the cache knows about a user and a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// The user belongs to the conversation.
    Member,
    /// The conversation exists; the user is not in it.
    NotMember,
    /// No such conversation.
    Unknown,
}

impl MembersCache {
    fn get(&self, conversation: ConversationId) -> Option<Arc<[UserId]>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&conversation)
            .cloned()
    }

    /// Records the members of a conversation (at creation).
    pub fn insert(&self, conversation: ConversationId, members: Arc<[UserId]>) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(conversation, members);
    }

    /// Members, reading the store on a miss. Blocking: for sync contexts.
    pub fn load_blocking(
        &self,
        store: &dyn ServerStore,
        conversation: ConversationId,
    ) -> Result<Option<Arc<[UserId]>>, ServerError> {
        if let Some(m) = self.get(conversation) {
            return Ok(Some(m));
        }
        let Some(members) = store.members(conversation)? else {
            return Ok(None);
        };
        let members: Arc<[UserId]> = members.into();
        self.insert(conversation, members.clone());
        Ok(Some(members))
    }

    /// Members, reading the store on the blocking pool on a miss.
    pub async fn load(
        self: &Arc<Self>,
        store: &Arc<dyn ServerStore>,
        conversation: ConversationId,
    ) -> Result<Option<Arc<[UserId]>>, ServerError> {
        if let Some(m) = self.get(conversation) {
            return Ok(Some(m));
        }
        let (cache, store) = (self.clone(), store.clone());
        tokio::task::spawn_blocking(move || cache.load_blocking(&*store, conversation)).await?
    }

    /// Whether `user` belongs to `conversation`.
    pub async fn check(
        self: &Arc<Self>,
        store: &Arc<dyn ServerStore>,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<Membership, ServerError> {
        Ok(match self.load(store, conversation).await? {
            None => Membership::Unknown,
            Some(m) if m.contains(&user) => Membership::Member,
            Some(_) => Membership::NotMember,
        })
    }
}
