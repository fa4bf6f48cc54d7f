"""Registry tables (SQLAlchemy Core), as of the newest migration in ``migrations/``:
what Alembic compares against and the search compiler selects from.

Object ids are stored as hex text: the registry never reads bytes from the store, it
only remembers which tree a version names."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from modelkeep.registry.registry import SCHEMA_VERSION as SCHEMA_VERSION  # bumped there

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("default_branch", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False, server_default="model"),  # model | dataset
)

versions = Table(
    "versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", ForeignKey("models.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("branch", String(128), nullable=False),
    Column("tree_id", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("file_count", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("author", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("params", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("lineage", JSON, nullable=False),
    # Format, signature and profile of a model version (None: plain files).
    Column("artifact", JSON, nullable=True),
    # Version numbers are unique per model: the constraint is what makes
    # concurrent commits safe, whatever the engine.
    UniqueConstraint("model_id", "number", name="uq_versions_model_number"),
)

version_parents = Table(
    "version_parents",
    metadata,
    Column("version_id", ForeignKey("versions.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("parent_id", ForeignKey("versions.id"), nullable=False),
)

# Each version's identity across repositories (registry/identity.py), stored so that
# "is this identity here?" is one indexed query instead of hashing every version of a
# model. A table of its own, not a column of `versions`: versions are immutable (their
# triggers refuse any UPDATE), and an identity is filled in after its version for those
# made before this table, or whose parents had none yet. Insert-only: a row, once
# written, holds the one value every process computes for that version.
version_identities = Table(
    "version_identities",
    metadata,
    Column("version_id", ForeignKey("versions.id"), primary_key=True),
    # The version's model, repeated here so that the index below answers by model.
    Column("model_id", ForeignKey("models.id"), nullable=False),
    Column("identity", String(64), nullable=False),
    Index("ix_version_identities_model_identity", "model_id", "identity"),
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version_id", ForeignKey("versions.id"), nullable=False, index=True),
    Column("path", Text, nullable=False),
    Column("content_id", String(64), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
)

refs = Table(
    "refs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", ForeignKey("models.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # branch | alias | tag
    Column("name", String(128), nullable=False),
    Column("version_id", ForeignKey("versions.id"), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # One namespace per model, so `churn@x` is never ambiguous.
    UniqueConstraint("model_id", "name", name="uq_refs_model_name"),
)

deployments = Table(
    "deployments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", ForeignKey("models.id"), nullable=False),
    Column("alias", String(128), nullable=False),
    Column("strategy", String(16), nullable=False),  # blue-green | canary | shadow
    Column("primary_version", Integer, nullable=False),
    Column("candidate_version", Integer, nullable=False),
    Column("percent", Float, nullable=False),
    Column("steps", JSON, nullable=False),
    Column("interval_seconds", Float),
    Column("status", String(16), nullable=False),  # active | promoted | aborted | completed
    Column("actor", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("stats", JSON, nullable=False),
    Index("ix_deployments_model_alias", "model_id", "alias"),
)

# What each replica of a server serves, as it last reported it (a gauge, overwritten by
# every report; rows not seen for a week are deleted by the next report).
replicas = Table(
    "replicas",
    metadata,
    Column("server", String(256), primary_key=True),  # ray:churn, local:127.0.0.1:8080
    Column("replica", String(256), primary_key=True),  # the replica within the server
    Column("model_id", ForeignKey("models.id"), nullable=False),
    Column("alias", String(128), nullable=False),
    Column("host", String(256), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", Integer),  # the version number served (NULL: nothing loaded)
    Column("versions", JSON, nullable=False),  # every version number loaded
    Column("state", String(16), nullable=False),  # starting | serving | failed | stopped
    Column("error", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

monitor_reports = Table(
    "monitor_reports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version_id", ForeignKey("versions.id"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),  # batch | window
    Column("source", Text, nullable=False),
    Column("drifted", Boolean, nullable=False),
    Column("body", JSON, nullable=False),
    Index("ix_monitor_reports_version", "version_id", "at"),
)

monitor_schedules = Table(
    "monitor_schedules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", ForeignKey("models.id"), nullable=False),
    # As given (e.g. churn@production): resolved at each run, so it follows the alias.
    Column("revision", String(300), nullable=False),
    Column("every_seconds", BigInteger, nullable=False),
    Column("data", Text, nullable=False),  # path template: {date}, {time}, …
    Column("target", String(256)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(256), nullable=False),
    # Unix seconds of the last slot claimed: whole numbers compare exactly on every
    # engine, which the compare-and-swap that claims a slot relies on.
    Column("last_slot", BigInteger),
    Column("last_run_at", DateTime(timezone=True)),
    Column("last_status", String(16)),  # running | ok | drift | failed
    Column("last_report", Integer),
    Column("last_error", Text),
    Column("active", Boolean, nullable=False),
    Index("ix_monitor_schedules_model", "model_id", "active"),
)

# Labels: key → value on a version that may change after the commit (who reviewed it,
# which stage it is in); the version itself stays immutable, every change is an event.
labels = Table(
    "labels",
    metadata,
    Column("version_id", ForeignKey("versions.id"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(256), nullable=False),
    Index("ix_labels_key_value", "key", "value"),
)

# One policy per model: the text as the user wrote it (TOML or YAML), parsed on read.
policies = Table(
    "policies",
    metadata,
    Column("model_id", ForeignKey("models.id"), primary_key=True),
    Column("text", Text, nullable=False),
    Column("format", String(8), nullable=False),  # toml | yaml
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(256), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("model", String(128)),
    Column("ref_kind", String(16)),
    Column("ref_name", String(128)),
    Column("before_version", Integer),
    Column("after_version", Integer),
    Column("message", Text, nullable=False),
    Column("details", JSON, nullable=False),
    # Who acted through a team server: the token's id and the client's address (NULL
    # for changes made on the repository itself).
    Column("token_id", String(32)),
    Column("address", String(64)),
    Index("ix_events_model_ref", "model", "ref_name"),
)

# Access tokens of a team server. Only a hash of each secret is kept: secrets are 256
# random bits, so a fast hash (SHA-256) is as safe as a slow one and costs a request
# nothing. Revoked tokens stay, for the audit trail.
tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),  # public, random: shown in lists and events
    Column("user", String(256), nullable=False),
    Column("scope", String(8), nullable=False),  # read | write | admin
    Column("models", String(256), nullable=False, server_default="*"),  # an fnmatch pattern
    Column("secret_hash", String(64), nullable=False),  # SHA-256 hex of the secret
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by", String(256)),
    Column("last_used_at", DateTime(timezone=True)),
)
