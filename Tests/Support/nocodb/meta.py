"""NocoDB's meta, in memory, with the physical tables in PostgreSQL.

Every rule cites the NocoDB source it models: `file:line` is nocodb/nocodb at 8b78e7b8
(0.258.3; the salim-b/nocodb snapshot), paths under packages/nocodb/src/ unless they start
with packages/. Rules marked [2026] follow the current release and apply with
--nocodb-version 2026; they cite `file@commit:line` in nocodb/nocodb's develop branch. A git
snapshot of develop is too large to fetch here (783 MB), so these files were read one by one
from a file index of nocodb/nocodb; each commit is the one the index holds for that file,
the newest found, and not one commit for all. Where no copy of the current code could be
found (TableSystemColumns with __nc_deleted, PgUi's type for Deleted),
shared/nocodb/fixture-schema.sql and the copies nearest to it are cited and the gap is said.
"""
import base64
import hashlib
import os
import random
import re
import string
import subprocess
import uuid

from validation import is_email

V0258 = "0.258.3"
V2026 = "2026"

# packages/nocodb-sdk/src/lib/sqlUi/PgUi.ts:1617-1750 getDataTypeForUiType (uidt -> PostgreSQL
# type; anything else, CreatedBy and LastModifiedBy included, is `character varying`). ID is
# int4 with ai (:1620-1632), which PgClient creates as serial.
UIDT_TYPES = {
    "SingleLineText": "text", "LongText": "text", "Number": "bigint", "Decimal": "decimal",
    "DateTime": "timestamp", "Date": "date", "Checkbox": "bool", "SingleSelect": "text",
    "MultiSelect": "text", "JSON": "json", "Email": "character varying", "URL": "text",
    "PhoneNumber": "character varying", "ID": "serial", "CreatedTime": "timestamp",
    "LastModifiedTime": "timestamp", "CreatedBy": "character varying", "LastModifiedBy": "character varying",
}
# PgUi.ts:1650-1653: Checkbox also gets cdf 'false', a column default.
UIDT_DEFAULTS = {"Checkbox": "false"}
# [2026] Order and Deleted exist only in the current release (not in 0.258.3's UITypes,
# packages/nocodb-sdk/src/lib/UITypes.ts:5-47). Order is numeric:
# packages/nocodb-sdk/src/lib/sqlUi/PgUi.ts@a9496ef1:1775-1777 (getDataTypeForUiType). Deleted
# defaults to false on PostgreSQL: nc_job_010_soft_delete_column.ts@df770ad3:200-211
# (packages/nocodb/src/modules/jobs/migration-jobs/), which adds the column to older tables.
# No copy of PgUi with a Deleted case was found; bool is shared/nocodb/fixture-schema.sql:54.
UIDT_TYPES_2026 = {"Order": "numeric", "Deleted": "bool"}
UIDT_DEFAULTS_2026 = {"Deleted": "false"}

# services/tables.service.ts:499-575: what 0.258.3 adds to a table created through the API
# when the request lacks it, appended after the request's columns. No ID column: NocoDB's
# web UI sends one itself (packages/nocodb-sdk/src/lib/sqlUi/PgUi.ts:107-131
# getNewTableColumns, used by packages/nc-gui/composables/useTable.ts:36).
SYSTEM_0258 = [("CreatedTime", "created_at", "CreatedAt"), ("LastModifiedTime", "updated_at", "UpdatedAt"),
               ("CreatedBy", "created_by", "nc_created_by"), ("LastModifiedBy", "updated_by", "nc_updated_by")]

# [2026] The roster put *before* the request's columns, in this order, by
# helpers/tableHelpers.ts@22ba6dea:41-62 repopulateCreateTableSystemColumns, which calls
# TableSystemColumns(isEE && PG, isMeta): helpers/columnHelpers.ts@6235030a:697-751 gives
# Id (system: false) .. nc_order with their titles; that copy predates __nc_deleted, which
# the current roster adds on a meta source (the default base) after nc_order, titled like its
# column name (nc_job_010_soft_delete_column.ts@df770ad3:31-45, fixture-schema.sql:46-59).
# The row-meta column is EE only. ID, Order and Deleted are reserved (allowNonSystem: false).
SYSTEM_2026 = [("ID", "id", "Id", False), ("CreatedTime", "created_at", "CreatedAt", True),
               ("LastModifiedTime", "updated_at", "UpdatedAt", True), ("CreatedBy", "created_by", "nc_created_by", True),
               ("LastModifiedBy", "updated_by", "nc_updated_by", True), ("Order", "nc_order", "nc_order", True),
               ("Deleted", "__nc_deleted", "__nc_deleted", True)]
# [2026] helpers/columnHelpers.ts@6235030a:753-772 deleteColumnSystemPropsFromRequest: what
# repopulateCreateTableSystemColumns strips from every request column (tableHelpers.ts@22ba6dea:91),
# so a request can no longer make its own primary key, auto-increment or system column.
REQUEST_SYSTEM_PROPS_2026 = ("dt", "np", "ns", "clen", "cop", "pk", "rqd", "un", "ai", "cc", "csn", "dtx", "au",
                             "validate", "system")
# [2026] sanitizeColumnName keeps international letters and digits:
# helpers/columnHelpers.ts@6235030a:608-629 replaces each character outside
# [REGEXSTR_INTL_LETTER REGEXSTR_NUMERIC_ARABIC _] (packages/nocodb-sdk/src/lib/regex/token.ts@f48b56d1:1-58).
INTL_LETTER_2026 = ("A-Za-z" "\u4e00-\u9fa0" "\u0400-\u04FF" "\u3041-\u3094\u30a1-\u30f4\u30fc\u3005\u3006\u3024\u30f6"
                    "\u1100-\u11FF\u3130-\u318F\uA960-\uA97F\uAC00-\uD7AF\uD7B0-\uD7FF" "\u0621-\u064A" "\u0900-\u097F"
                    "\u0370-\u03FF" "\u0590-\u05FF" "\u0E00-\u0E7F" "\u0B80-\u0BFF" "\u0530-\u058F" "\u0980-\u09FF"
                    "\u10A0-\u10FF" "\u0A80-\u0AFF" "\u0C80-\u0CFF" "\u1780-\u17FF" "\u0D00-\u0D7F" "\u1800-\u18AF"
                    "\u1000-\u109F" "\u0D80-\u0DFF" "\u0700-\u074F" "\u0300-\u036F")
# [2026] packages/nocodb-sdk/src/lib/UITypes.ts@03040010:399-433 isSupportedDisplayValueColumn
# (LongText too, unless rich text or an AI prompt: meta.richMode, meta['ai'], LongTextAiMetaProp
# in packages/nocodb-sdk/src/lib/globals.ts).
DISPLAY_VALUE_UIDTS_2026 = {"SingleLineText", "Date", "DateTime", "Time", "Year", "PhoneNumber", "Email", "URL", "Number",
                            "Currency", "Percent", "Duration", "Decimal", "Formula"}

# packages/nocodb-sdk/src/lib/UITypes.ts:163-187 isVirtualCol (Count is not virtual; the
# created/modified time and user types are).
VIRTUAL = {"LinkToAnotherRecord", "Formula", "QrCode", "Barcode", "Rollup", "Lookup", "Links", "CreatedTime",
           "LastModifiedTime", "CreatedBy", "LastModifiedBy", "Button"}
CREATED_MODIFIED = {"CreatedTime", "LastModifiedTime", "CreatedBy", "LastModifiedBy"}
PG_TABLE_NAME_MAX = 63    # services/tables.service.ts:640-648
PG_COLUMN_NAME_MAX = 59   # models/Column.ts:1564-1575 getMaxColumnNameLength('pg')

# services/base-users/base-users.service.ts:68-79: the roles an invite or update may set.
# The role values are the same in both modes (nocodb-sdk enums.ts ProjectRoles :13-20 at
# 0.258.3 and @a856d4bb). The copies of nocodb/nocodb's base-users.service.ts at 0199ca5c and
# 522b55d2 are *older* than 0.258.3: their refusals of owner ("Owner cannot be updated", no
# owner in the invite list) were removed by a0d87c5a4 (2024-08-14, "Nc feat/user management
# (#9219)"), which 0.258.3 contains. [2026] rules cite the current copy,
# services/base-users/base-users.service.ts@cb87bd27 (cb87bd27d636): the same roles (:81-92,
# :357-368), a PATCH validated against ProjectUserUpdateReq (:342-345), a refusal of a role
# above the caller's (:410-418), an invite answered without its token (below), and an
# existing owner re-invited checked for the last owner first (:155-171).
# Not modelled: that copy throws its refusals through NcError.baseUserError, which answers
# 422 in the {error, message} envelope (the error codex's BASE_USER_ERROR, code 422); the
# name it puts in `error` was not found, so 2026 mode keeps 0.258.3's 400 {msg}. The bridge
# refuses these cases itself before any call, and prints either envelope as one line.
BASE_ROLES = ["owner", "creator", "editor", "commenter", "viewer", "no-access"]
# services/model-visibilities.service.ts:84-91: the roles a visibility rule lists.
VISIBILITY_ROLES = ["owner", "creator", "viewer", "editor", "commenter", "guest"]

GRID, FORM, KANBAN = 3, 1, 4


class NcError(Exception):
    """filters/global-exception/global-exception.filter.ts:172-209: a BadRequest/NotFound
    answers {msg}; an NcBaseErrorv2 (helpers/catchError.ts:711-723) answers
    {error, message, details} with the code of its type (catchError.ts:511-667)."""

    def __init__(self, status, msg=None, error=None, message=None, extra=None):
        super().__init__(msg or message)
        self.status = status
        # NcBaseErrorv2 without details: JSON leaves the undefined key out.
        self.body = {"msg": msg} if error is None else {"error": error, "message": message}
        if extra:
            self.body.update(extra)


def bad_request(msg):
    return NcError(400, msg)


def not_found_v2(kind, ident):
    # helpers/catchError.ts:541-567: BASE_NOT_FOUND, TABLE_NOT_FOUND, VIEW_NOT_FOUND, FIELD_NOT_FOUND, 404.
    return NcError(404, error=f"{kind.upper()}_NOT_FOUND", message=f"{kind.capitalize()} '{ident}' not found")


def new_id(prefix):
    return prefix + "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(14))


def quote(identifier):
    return '"' + identifier.replace('"', '""') + '"'


# [2026] packages/nocodb-sdk/src/lib/passwordHelpers.ts (the copy the index holds, no commit
# shown): the value a masked password is answered as, and what counts as a bcrypt hash.
PASSWORD_SENTINEL_2026 = "__NC_PASSWORD_MASKED__"


def is_bcrypt_hash(value):
    return isinstance(value, str) and re.match(r"^\$2[aby]\$", value) is not None


def bcrypt_stand_in(password):
    """A one-way value with bcrypt's prefix, in place of bcryptjs (not installed here): all
    the double needs is that the stored value is a hash that cannot be compared or read back."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1000)
    return "$2b$10$" + base64.b64encode(salt + digest).decode()


def mask_password_2026(view):
    """[2026] View.maskPasswordForResponse, as its callers describe it (views.service.ts
    @f4e47b83:74-76, :488-489, :778): a bcrypt hash is answered as the sentinel; a password
    kept as given before the release (not a hash) is answered as it is."""
    if not is_bcrypt_hash(view.get("password")):
        return view
    return dict(view, password=PASSWORD_SENTINEL_2026)


def sanitize_column_name(name, version=V0258):
    """helpers/columnHelpers.ts:409-424: every non-word character (JS \\W, ASCII, on UTF-16
    code units: a character beyond the BMP is two) becomes '_'; a name of underscores only
    becomes 'field'. [2026] the same, but letters of the scripts in INTL_LETTER_2026 stay
    (columnHelpers.ts@6235030a:608-629; the regex has no u flag, so still per code unit)."""
    keep = "A-Za-z" if version == V0258 else INTL_LETTER_2026
    name = re.sub(f"[^{keep}0-9_]", lambda m: "__" if ord(m.group()) > 0xFFFF else "_", name)
    return "field" if re.fullmatch(r"_+", name) else name


def unique_name(existing, initial):
    """helpers/getUniqueName.ts:3-16 (and :18-29 for titles): name, name1, name2, ..."""
    c = 0
    while f"{initial}{c or ''}" in existing:
        c += 1
    return f"{initial}{c or ''}"


def map_default_display_value(columns):
    """helpers/mapDefaultDisplayValue.ts:3-30: without a pv column, the column after the
    primary key (or before it when it is last; the first without a key) is the display value."""
    if any(c.get("pv") for c in columns) or not columns:
        return
    pk = next((i for i, c in enumerate(columns) if c.get("pk")), -1)
    if pk == len(columns) - 1:
        columns[pk - 1 if pk > 0 else 0]["pv"] = True
    elif pk > -1:
        columns[pk + 1]["pv"] = True
    else:
        columns[0]["pv"] = True


def map_default_display_value_2026(columns):
    """[2026] helpers/mapDefaultDisplayValue.ts@6235030a:8-56: without a pv column, the first
    column that can be a display value (UITypes.ts@03040010:399-433), is not a system column
    and is not a created/modified time; else the first non-system column; only then the
    0.258.3 rule by position. tables.service.ts@f4e47b83:1048 runs it on the roster and the
    request's columns together, before the roster's Id gets pk (getColumnPropsFromUIDT,
    :1107-1134), so a request without such a field gets Id as its display value. System
    columns as 0.258.3's isSystemColumn (is_system_column below); no newer copy was read."""
    if any(c.get("pv") for c in columns) or not columns:
        return
    def can_show(c):
        meta = c.get("meta") if isinstance(c.get("meta"), dict) else {}
        return (c.get("uidt") in DISPLAY_VALUE_UIDTS_2026
                or (c.get("uidt") == "LongText" and not meta.get("richMode") and not meta.get("ai")))
    chosen = (next((c for c in columns if can_show(c) and not is_system_column(c)
                    and c.get("uidt") not in ("CreatedTime", "LastModifiedTime")), None)
              or next((c for c in columns if not is_system_column(c)), None))
    if chosen is not None:
        chosen["pv"] = True
    else:
        map_default_display_value(columns)


def repopulate_create_table_system_columns(columns):
    """[2026] helpers/tableHelpers.ts@22ba6dea:27-94 repopulateCreateTableSystemColumns: the
    roster first, then the request's columns without ID, Order and Deleted (:48-62). From the
    last request column back (:63-92), against each roster column sharing its title or
    column name: the same uidt and the same column name (or none, or the same title) is the
    roster column itself and is dropped (:71-82); otherwise a clashing title or column name
    is renamed name1, name2, .. against every column so far (:83-89, getUniqueName.ts:3-29).
    Every request column loses its system props (:91)."""
    missing = object()     # JS undefined, unlike a JSON null
    roster = [{"uidt": u, "column_name": n, "title": t, "system": s} for u, n, t, s in SYSTEM_2026]
    result = roster + [dict(c) for c in columns if c.get("uidt") not in {"ID", "Order", "Deleted"}]
    for i in range(len(result) - 1, len(roster) - 1, -1):
        col = result[i]
        title, name = col.get("title", missing), col.get("column_name", missing)
        for sys_col in [r for r in roster if r["title"] == title or r["column_name"] == name]:
            if sys_col["uidt"] == col.get("uidt") and (sys_col["column_name"] == name or name is missing
                                                       or (sys_col["title"] == title and title is not missing)):
                del result[i]
                continue
            if col.get("title") and col["title"] == sys_col["title"]:
                col["title"] = unique_name({c.get("title") for c in result}, col["title"])
            if col.get("column_name") and col["column_name"] == sys_col["column_name"]:
                col["column_name"] = unique_name({c.get("column_name") for c in result}, col["column_name"])
        for prop in REQUEST_SYSTEM_PROPS_2026:
            col.pop(prop, None)
    return result


def is_system_column(column):
    """packages/nocodb-sdk/src/lib/helperFunctions.ts:18-27 isSystemColumn: a ForeignKey,
    created_at/updated_at as DateTime, a primary key that is auto-increment, defaulted or
    auto-generated, or a column marked system."""
    meta = column.get("meta") if isinstance(column.get("meta"), dict) else {}
    return bool(column.get("uidt") == "ForeignKey"
                or (column.get("column_name") in ("created_at", "updated_at") and column.get("uidt") == "DateTime")
                or (column.get("pk") and (column.get("ai") or column.get("cdf")))
                or (column.get("pk") and meta.get("ag"))
                or column.get("system"))


class Meta:
    def __init__(self, pg_url, base_id, base_title, version, extra_bases=0, limit_max=1000, owner_email="admin@example.com",
                 org_users=()):
        self.pg_url = pg_url
        self.version = version
        self.limit_max = limit_max
        self.base = self._make_base(base_id, base_title)
        self.bases = [self.base] + [self._make_base(new_id("p"), f"Other {i}") for i in range(extra_bases)]
        self.tables = {}        # id -> table (columns inside)
        self.views = {}         # id -> view
        self.filters = {}       # view id -> [filter]
        self.view_columns = {}  # view id -> [view column]
        # nc_users: every user of the instance. The API token belongs to the first, the
        # base's owner (strategies/authtoken.strategy/authtoken.strategy.ts:14-56 makes the
        # token's user the caller; base-users.service.ts:60-66 compares the invited role's
        # power with the caller's). `org_users` are users of the instance who are not in
        # this base (invited to another base, say).
        self.users = [self._make_user(owner_email, "org-level-creator,super")]
        self.users += [self._make_user(email.lower(), "org-level-viewer") for email in org_users]
        self.token_user = self.users[0]
        # nc_base_users for this base: user id -> roles (a row may carry no role).
        self.base_roles = {self.token_user["id"]: "owner"}
        self.visibility = {}    # (view id, role) -> disabled
        self.types = dict(UIDT_TYPES, **(UIDT_TYPES_2026 if version == V2026 else {}))
        self.defaults = dict(UIDT_DEFAULTS, **(UIDT_DEFAULTS_2026 if version == V2026 else {}))
        self.sql(f"CREATE SCHEMA IF NOT EXISTS {quote(base_id)}")

    @staticmethod
    def _make_user(email, main_roles, invite_token=None):
        return {"id": new_id("us"), "email": email, "display_name": None, "invite_token": invite_token,
                "main_roles": main_roles, "created_at": "2025-01-01 00:00:00+00:00"}

    def _make_base(self, base_id, title):
        return {"id": base_id, "title": title, "prefix": "", "is_meta": True, "status": None,
                "sources": [{"id": "ds_" + base_id[1:], "base_id": base_id, "is_meta": True, "is_local": True,
                             "type": "pg", "enabled": True, "config": None}]}

    def sql(self, statement):
        subprocess.run(["psql", self.pg_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", statement],
                       check=True, capture_output=True)

    # --- tables -------------------------------------------------------------------------

    def table_summary(self, t):
        return {k: v for k, v in t.items() if k != "columns"}

    def create_table(self, validators, req):
        # services/tables.service.ts:471-483: a column with only column_name gets it as title;
        # a table with only table_name gets it as title. Then validatePayload(TableReq) (:485).
        for c in (req or {}).get("columns") or []:
            if isinstance(c, dict) and not c.get("title") and c.get("column_name"):
                c["title"] = c["column_name"]
        if isinstance(req, dict) and not req.get("title") and req.get("table_name"):
            req["title"] = req["table_name"]
        validators.validate_payload("TableReq", req)
        columns = [dict(c) for c in req["columns"]]
        if self.version == V0258:
            for uidt, name, title in SYSTEM_0258:
                existing = next((c for c in columns if c.get("uidt") == uidt), None)
                if existing is None or not existing.get("system"):
                    columns.append({"uidt": uidt, "column_name": unique_name({c.get("column_name") for c in columns}, name),
                                    "title": unique_name({c.get("title") for c in columns}, title), "system": True})
            mapped = columns
        else:
            mapped = repopulate_create_table_system_columns(columns)                   # @f4e47b83:898-906
        # The checks below are 0.258.3's. [2026] tables.service.ts@f4e47b83:908-1042 makes the same
        # checks in the same order but answers through NcError.get(context).invalidRequestBody /
        # .duplicateAlias, whose envelope no current copy of helpers/catchError.ts was found to
        # show; it also refuses '.', '/' and '\\' in the name (:954-963), turns '$' and '?' into
        # '_' (:965-971) and renames a name a trashed table holds (:988-1009). Not modelled: the
        # bridge sends plain table names, once.
        title = req.get("title")
        if not title:
            raise bad_request("Missing table `title` property in request body")        # tables.service.ts:577-579
        table_name = req.get("table_name") or title                                     # :581-583
        if any(t["title"] == title for t in self.tables.values()):
            raise bad_request("Duplicate table alias")                                 # :585-593
        if re.search(r"^\s+|\s+$", table_name):
            raise bad_request("Leading or trailing whitespace not allowed in table names")  # :612-616
        if any(t["table_name"] == table_name for t in self.tables.values()):
            raise bad_request("Duplicate table name")                                  # :618-626
        if len(table_name) > PG_TABLE_NAME_MAX:
            raise bad_request(f"Table name exceeds {PG_TABLE_NAME_MAX} characters")    # :650-654
        if self.version == V0258:
            map_default_display_value(mapped)                                          # :661
        else:
            map_default_display_value_2026(mapped)                                     # @f4e47b83:1048
            mapped[0]["pk"] = mapped[0]["ai"] = True    # the roster's Id, by getColumnPropsFromUIDT (:1107-1134)
        used = set()
        for c in mapped:                                                               # :663-701
            # :665-669: virtual columns keep their name, except system created/modified ones.
            if c.get("uidt") in VIRTUAL and not (c.get("uidt") in CREATED_MODIFIED and c.get("system")):
                raise bad_request(f"a {c.get('uidt')} column in a new table is not modelled by this test double")
            name = c.get("column_name") or c.get("title")
            name = sanitize_column_name(name[:PG_COLUMN_NAME_MAX - 5], self.version)    # [2026] @f4e47b83:1064-1067
            if name in used:
                suffix = 1
                while f"{name}_{suffix}" in used:
                    suffix += 1
                name = f"{name}_{suffix}"
            used.add(name)
            c["column_name"] = name[:PG_COLUMN_NAME_MAX]
            if c.get("title") and len(c["title"]) > 255:
                raise bad_request(f"Column title {c['title']} exceeds 255 characters")
        for c in mapped:
            uidt = c.get("uidt") or "SingleLineText"
            if uidt not in self.types:
                raise bad_request(f"uidt {uidt} is not modelled by this test double")
        # db/sql-client/lib/pg/PgClient.ts:2935-2949 createTable: the columns in order, then a
        # primary key over the pk columns (alterTablePK, :2859-2910); alterTableColumn :2951-2976
        # makes an ai column serial, every other column NULL unless rqd, with its cdf as
        # DEFAULT. [2026] the same in PgClient.ts@014fc9b9 createTable/alterTableColumn(change 0).
        ddl = []
        for c in mapped:
            uidt = c.get("uidt") or "SingleLineText"
            if uidt == "ID" or (c.get("pk") and c.get("ai")):
                ddl.append(f"{quote(c['column_name'])} serial")
                c["pk"] = c["ai"] = True
                c["uidt"] = "ID"
            else:
                ddl.append(self._column_ddl(c["column_name"], uidt))
        pks = [quote(c["column_name"]) for c in mapped if c.get("pk")]
        if pks:
            ddl.append(f"PRIMARY KEY ({', '.join(pks)})")
        schema = quote(self.base["id"])
        self.sql(f"CREATE TABLE {schema}.{quote(table_name)} ({', '.join(ddl)})")
        if self.version == V2026:
            # [2026] services/tables.service.ts@f4e47b83:1209-1238: an index on the Order column,
            # then (:1240-1266) one on the Deleted column, each named after the table.
            for uidt, suffix in (("Order", "_order_idx"), ("Deleted", "_deleted_idx")):
                column = next(c["column_name"] for c in mapped if c.get("uidt") == uidt)
                self.sql(f"CREATE INDEX {quote(table_name + suffix)} ON {schema}.{quote(table_name)} ({quote(column)})")
        t = {"id": new_id("m"), "base_id": self.base["id"], "source_id": self.base["sources"][0]["id"],
             "title": title, "table_name": table_name, "type": "table", "enabled": True, "meta": None,
             "order": len(self.tables) + 1, "columns": []}
        self.tables[t["id"]] = t
        for c in mapped:
            t["columns"].append(self._column(t, c))
        # services/tables.service.ts -> models/Model.ts insert: the default grid view, titled
        # like the table (models/Model.ts insert calls View.insert with is_default).
        default = self.make_view(t, title, GRID)
        default["is_default"] = True
        return t

    def _column_ddl(self, name, uidt):
        default = self.defaults.get(uidt)
        return f"{quote(name)} {self.types[uidt]} NULL" + (f" DEFAULT {default}" if default else "")

    def _column(self, t, c):
        uidt = c.get("uidt") or "SingleLineText"
        col = {"id": new_id("c"), "fk_model_id": t["id"], "base_id": t["base_id"], "source_id": t["source_id"],
               "title": c.get("title") or c["column_name"], "column_name": c["column_name"], "uidt": uidt,
               "dt": self.types.get(uidt, "character varying"), "system": bool(c.get("system")), "pk": bool(c.get("pk")),
               "ai": bool(c.get("ai")), "pv": bool(c.get("pv")), "rqd": bool(c.get("rqd")),
               "order": len(t["columns"]) + 1, "meta": None}
        if c.get("colOptions"):
            col["colOptions"] = c["colOptions"]
        return col

    def find_column(self, column_id):
        for t in self.tables.values():
            for c in t["columns"]:
                if c["id"] == column_id:
                    return t, c
        raise not_found_v2("field", column_id)

    def add_column(self, validators, t, req):
        """services/columns.service.ts:1600-1714 columnAdd."""
        if isinstance(req, dict) and req.get("column_name") and not req.get("title"):
            req["title"] = req["column_name"]                                           # :1610-1612
        validators.validate_payload("ColumnReq", req)                                   # :1614
        uidt = req.get("uidt") or "SingleLineText"
        if uidt not in UIDT_TYPES or uidt == "ID" or uidt in VIRTUAL:
            raise bad_request(f"uidt {uidt} is not modelled by this test double")
        title = (req.get("title") or "").strip()                                        # :1656-1659
        name = sanitize_column_name(req.get("column_name") or req.get("title"), self.version)  # :1649-1654
        base_name = name[:PG_COLUMN_NAME_MAX - 5]                                       # :1666-1680
        name, suffix = base_name, 1
        while any(c["column_name"] == name for c in t["columns"]):
            name = f"{base_name}_{suffix}"
            suffix += 1
        if len(name) > PG_COLUMN_NAME_MAX:
            raise bad_request(f"Column name {name} exceeds {PG_COLUMN_NAME_MAX} characters")
        if len(title) > 255:
            raise bad_request(f"Column title {title} exceeds 255 characters")
        if any(c["title"] == (title or name) for c in t["columns"]):
            raise bad_request("Duplicate column alias")                                 # :1707-1714
        self.sql(f"ALTER TABLE {quote(self.base['id'])}.{quote(t['table_name'])} ADD COLUMN {self._column_ddl(name, uidt)}")
        col = self._column(t, dict(req, title=title or name, column_name=name, uidt=uidt))
        t["columns"].append(col)
        # models/Column.ts:239-252: column_show.show is !column.view_id, true for a field
        # added through this API. models/View.ts:592-650 insertColumnToAllViews keeps that
        # in forms and shared views; a kanban (or gallery) shows it while fewer than 3
        # non-system fields show; every other view shows it.
        columns = {c["id"]: c for c in t["columns"]}
        for view in self.views.values():
            if view["fk_model_id"] != t["id"]:
                continue
            show = True
            if not view["uuid"] and view["type"] == KANBAN:
                visible = [vc for vc in self.view_columns[view["id"]]
                           if vc["show"] and not is_system_column(columns.get(vc["fk_column_id"]))]
                show = len(visible) < 3
            self.view_columns[view["id"]].append(self._view_column(view, col, show=show))
        return col

    def update_column(self, t, column, req):
        """services/columns.service.ts:271-1584 columnUpdate (no validatePayload there). The
        body is the whole column, as NocoDB's UI sends it (nc-gui/composables/
        useColumnCreateStore.ts:102-105, :353): `colBody = {...param.column}` (:417) reaches
        updateMetaAndDatabase (:1560-1573), which ALTERs the column whose id the *body*
        carries and writes the body over that column's meta (:236-266)."""
        req = req if isinstance(req, dict) else {}
        if column["uidt"] in VIRTUAL or column.get("system"):
            raise bad_request(f"renaming a {column['uidt']} or system column is not modelled by this test double")
        if req.get("uidt") != column["uidt"]:
            raise bad_request(f"changing a column's type ({column['uidt']} -> {req.get('uidt')}) is not modelled by this test double")
        # :347-352: isVirtualCol(param.column) looks at the body only; a body without
        # column_name throws a TypeError in sanitizeColumnName, answered 400 {msg}
        # (global-exception.filter.ts:218-222). Kept in 2026 mode too, although the newest
        # columns.service.ts copy found (no commit shown by the index) sanitizes only a body
        # that has a column_name; its columnUpdate was not re-read as a whole.
        if not isinstance(req.get("column_name"), str):
            raise bad_request("Cannot read properties of undefined (reading 'replace')")
        name = sanitize_column_name(req["column_name"], self.version)
        title = req["title"].strip() if isinstance(req.get("title"), str) else None      # :354-357
        base_name = name[:PG_COLUMN_NAME_MAX - 5]                                       # :359-374, unique
        name, suffix = base_name, 1                                                     # against the path's column
        while any(c["column_name"] == name and c["id"] != column["id"] for c in t["columns"]):
            name = f"{base_name}_{suffix}"
            suffix += 1
        if title is not None and len(title) > 255:
            raise bad_request(f"Column title {title} exceeds 255 characters")            # :386-390
        if title and any(c["title"] == title and c["id"] != column["id"] for c in t["columns"]):
            raise bad_request(f"Duplicate column alias for table {t['title']} and column is {title}. "
                              "Please change the name of this column and retry.")        # :403-414
        if req.get("id") is None:
            # :236-244 matches no column, so no DDL; :266 Column.update(context, undefined)
            # ends in metaUpdate(...).where('id', undefined) (meta.service.ts:684-685), which
            # knex refuses; answered 400 {msg} (global-exception.filter.ts:218-222).
            raise bad_request("Undefined binding(s) detected when compiling UPDATE. Undefined column(s): [id] "
                              'query: update "nc_columns_v2" set ...')
        target = next((c for c in t["columns"] if c["id"] == req["id"]), None)          # :236-244
        if target is not None and name != target["column_name"]:
            self.sql(f"ALTER TABLE {quote(self.base['id'])}.{quote(t['table_name'])} "
                     f"RENAME COLUMN {quote(target['column_name'])} TO {quote(name)}")
        try:
            _, stored = self.find_column(req["id"])                                     # :266 Column.update
        except NcError:
            # models/Column.ts:1138-1141: Column.get of an unknown id is null; reading uidt throws.
            raise bad_request("Cannot read properties of null (reading 'uidt')")
        stored["column_name"] = name
        if title is not None:
            stored["title"] = title
        return stored

    def delete_column(self, t, column):
        """services/columns.service.ts:2256-2700 columnDelete."""
        if column.get("system"):
            # :2270-2276 (the API never passes forceDeleteSystem).
            raise bad_request(f"The column '{column['title'] or column['column_name']}' is a system column and cannot be deleted.")
        if column["uidt"] in VIRTUAL:
            raise bad_request(f"deleting a {column['uidt']} column is not modelled by this test double")
        self.sql(f"ALTER TABLE {quote(self.base['id'])}.{quote(t['table_name'])} DROP COLUMN {quote(column['column_name'])}")
        t["columns"].remove(column)
        for vcs in self.view_columns.values():
            vcs[:] = [vc for vc in vcs if vc["fk_column_id"] != column["id"]]
        # :2685-2694: the display value deleted, mapDefaultDisplayValue picks another.
        map_default_display_value(t["columns"])

    # --- views --------------------------------------------------------------------------

    def make_view(self, t, title, kind, group_column=None):
        """models/View.ts:1984-2226 insertMetaOnly, which the view create services call
        (grids.service.ts:32, forms.service.ts:48, kanbans.service.ts:41) and models/Model.ts:
        199-215 for a table's default grid; a kanban's fk_grp_col_id is stored as given
        (View.ts:2101-2112), no check of it."""
        v = {"id": new_id("vw"), "fk_model_id": t["id"], "base_id": t["base_id"], "source_id": t["source_id"],
             "title": title, "type": kind, "show": True, "is_default": False,
             "order": sum(1 for x in self.views.values() if x["fk_model_id"] == t["id"]) + 1,
             "lock_type": "collaborative", "meta": {}, "uuid": None, "password": None}
        if kind == KANBAN:
            v["view"] = {"fk_view_id": v["id"], "fk_grp_col_id": group_column}
        self.views[v["id"]] = v
        self.filters[v["id"]] = []
        self.view_columns[v["id"]] = self._initial_view_columns(v, t)
        return v

    def _initial_view_columns(self, v, t):
        """models/View.ts:1759-1982 bulkColumnInsertToViews, for a view that copies none: the
        table's columns with the display value first (:1831-1836, a stable sort on pv only),
        numbered in that order; a grid shows every one; a form hides the system ones
        (:1908-1909); a kanban shows the display value and, while fewer than 3 show, other
        non-system columns (:1879-1903; its grouping field only when it is the display value).
        (View.insert's own rules, View.ts:445-545, are not on this path.)"""
        columns = sorted(t["columns"], key=lambda c: -int(bool(c["pv"])))
        group = (v.get("view") or {}).get("fk_grp_col_id")
        shown_in_kanban = 0
        result = []
        for order, c in enumerate(columns, start=1):
            show = True
            if v["type"] == KANBAN:
                if c["id"] == group and c["pv"]:
                    show = True
                elif c["pv"]:
                    show, shown_in_kanban = True, shown_in_kanban + 1
                elif shown_in_kanban < 3 and not is_system_column(c):
                    show, shown_in_kanban = True, shown_in_kanban + 1
                else:
                    show = False
            elif v["type"] == FORM and is_system_column(c):
                show = False
            result.append({"id": new_id("nc"), "fk_view_id": v["id"], "fk_column_id": c["id"], "show": show, "order": order})
        return result

    @staticmethod
    def _view_column(view, column, show):
        return {"id": new_id("nc"), "fk_view_id": view["id"], "fk_column_id": column["id"], "show": show,
                "order": column["order"]}

    def hide_all(self, v):
        """models/View.ts:1505-1576 hideAllColumns: in a grid the display-value column stays visible."""
        keep = set()
        if v["type"] == GRID:
            t = self.tables[v["fk_model_id"]]
            keep = {c["id"] for c in t["columns"] if c["pv"]}
        for vc in self.view_columns[v["id"]]:
            if vc["fk_column_id"] not in keep:
                vc["show"] = False

    def show_all(self, v):
        """models/View.ts:1423-1503 showAllColumns: every column shown (none ignored: the
        bridge passes no ignoreIds, views.controller.ts:78-92)."""
        for vc in self.view_columns[v["id"]]:
            vc["show"] = True

    def update_view_column(self, v, view_column_id, req):
        """services/view-columns.service.ts:62-88 then models/View.ts:912-1004 updateColumn:
        `order` and `show` of the view column with that id (of any view of this kind: the
        update is by id alone); in a grid the display value's stays shown and first whatever
        is sent (:955-981). An id that is no view column updates no row, and the answer is
        that count, 0 (:989-1003)."""
        updates = {k: req[k] for k in ("order", "show") if k in req}
        vc = next((x for view in self.views.values() if view["type"] == v["type"]
                   for x in self.view_columns[view["id"]] if x["id"] == view_column_id), None)
        if vc is None:
            return 0
        if v["type"] == GRID:
            pv = next((c for c in self.tables[v["fk_model_id"]]["columns"] if c["pv"]), None)
            if pv is not None and vc["fk_view_id"] == v["id"] and vc["fk_column_id"] == pv["id"]:
                updates.update(order=1, show=True)
        if "show" in updates:
            updates["show"] = bool(updates["show"])
        vc.update(updates)
        return 1

    def share(self, v):
        """models/View.ts:1163-1210 share: a uuid once, and meta.allowCSVDownload = true.
        [2026] answered with the password masked (services/views.service.ts@f4e47b83:150-170
        returns View.share's answer; the hash never leaves the server, passwordHelpers.ts)."""
        if not v["uuid"]:
            v["uuid"] = str(uuid.uuid4())
        if not isinstance(v.get("meta"), dict) or "allowCSVDownload" not in v["meta"]:
            v["meta"] = dict(v.get("meta") or {}, allowCSVDownload=True)
        return v if self.version == V0258 else mask_password_2026(v)

    def update_share(self, v, req):
        """services/views.service.ts:255-268 shareViewUpdate, then models/View.ts:1272-1282
        extractProps: `password` and `meta` as given. 0.258.3 stores the password as given.

        [2026] services/views.service.ts@f4e47b83:704-707 validates SharedViewReq, :758-761
        hands the body to View.update, and :778 answers the view with its password masked.
        View.update keeps a new password as a bcrypt hash, and the sentinel the UI echoes back
        is dropped from the body so the hash is not hashed again (the contract stated beside
        NC_VIEW_PASSWORD_PROTECTED_SENTINEL in packages/nocodb-sdk/src/lib/passwordHelpers.ts;
        the index holds that copy without a commit, and View.ts only at commits before the
        change). A null or empty password removes it."""
        for k in ("password", "meta"):
            if k not in req:
                continue
            value = req[k]
            if k == "password" and self.version == V2026:
                if value == PASSWORD_SENTINEL_2026:
                    continue
                value = bcrypt_stand_in(value) if value else value
            v[k] = value
        return 1 if self.version == V0258 else mask_password_2026(v)

    def shared_views(self, t):
        """controllers/views.controller.ts:129-143 + models/View.ts:1578-1607: the table's
        shared views, password included as stored. [2026] as masked: the hash never leaves
        the server (passwordHelpers.ts, above); NocoDB's own lists mask it the same way,
        tables.service.ts@f4e47b83:665-668 and :724-726, views.service.ts@f4e47b83:74-76."""
        views = [x for x in self.views.values() if x["fk_model_id"] == t["id"] and x["uuid"]]
        return views if self.version == V0258 else [mask_password_2026(x) for x in views]

    # --- users --------------------------------------------------------------------------

    def caller_power(self):
        """The token user's power in this base (its base_roles, authtoken.strategy.ts:33-52)."""
        return role_power(self.base_roles.get(self.token_user["id"]))

    def invite(self, validators, req):
        """services/base-users/base-users.service.ts:47-217 userInvite (controller :63-66)."""
        if not (req or {}).get("email"):
            raise bad_request("Email is required")                                   # controller :63-65
        validators.validate_payload("ProjectUserReq", req)                              # :55-58
        if role_power(req["roles"]) > self.caller_power():                              # :60-66
            raise bad_request("Insufficient privilege to invite with this role")
        if req["roles"] not in BASE_ROLES:
            raise bad_request("Invalid role")                                          # :68-79
        emails = [e.strip() for e in re.split(r"\s*,\s*", req["email"].lower())]        # :81-84
        invalid = [e for e in emails if not is_email(e)]
        if invalid:
            raise bad_request("Invalid email address : " + ", ".join(invalid))         # :91-93
        invite_token = str(uuid.uuid4())                                                # :95
        for email in emails:
            user = next((u for u in self.users if u["email"] == email), None)
            if user:
                # :101-139: an existing user of the instance gets the base mapping (or its
                # role, when mapped without one); one mapped with a role is refused.
                roles = self.base_roles.get(user["id"])
                if self.version == V2026 and "owner" in (roles or "").split(","):
                    # [2026] @cb87bd27:155-171: an owner re-invited is checked for the last
                    # owner first (checkMultipleOwnerExist, :494-518: one or none refused).
                    if sum(1 for r in self.base_roles.values() if "owner" in (r or "").split(",")) <= 1:
                        raise bad_request("At least one owner is required")
                if roles:
                    raise bad_request(f"{email} with role {roles} already exists in this base")  # :117-121
                self.base_roles[user["id"]] = req["roles"] or "editor"
            else:
                # :140-162: a new user of the instance, with an invite token, mapped to the base.
                user = self._make_user(email, "org-level-viewer", invite_token)
                self.users.append(user)
                self.base_roles[user["id"]] = req["roles"]
                if len(emails) == 1 and self.version == V0258:
                    # :164-189: no e-mail plugin is configured here (the default), so the
                    # invite mail is not sent and the token comes back.
                    return {"invite_token": invite_token, "email": email}
                # [2026] @cb87bd27:284-299 returns the token only when sending the invite
                # mail throws. MailService.sendMail never throws: without an e-mail plugin
                # it returns false (services/mail/mail.service.ts@ccb52d68:107-112; getAdapter
                # turns a failing plugin lookup into null, :23-30), and a failed send is
                # caught into false too (its try from :116). So the answer is :323-326's, with
                # no token, whichever of the two files' commits is the newer.
        if len(emails) == 1:
            return {"msg": "The user has been invited successfully"}                    # :209-213
        return {"invite_token": invite_token, "emails": emails, "error": []}

    def update_user(self, validators, user_id, req):
        """services/base-users/base-users.service.ts:219-310 baseUserUpdate."""
        if self.version == V0258:
            validators.validate_payload("ProjectUserReq", req)                          # :230-233
        else:
            # [2026] @cb87bd27:342-345 validates ProjectUserUpdateReq: email optional (an
            # e-mail when given), as its name and the UI's role change use it; that schema is
            # not in the 0.258.3 spec here, and its current text was not read.
            if not isinstance((req or {}).get("roles"), str):
                raise bad_request("roles is required")
            if req.get("email") is not None and not is_email(str(req["email"]).lower()):
                raise bad_request("Invalid email address : " + str(req["email"]))
        if req["roles"] not in BASE_ROLES:
            raise bad_request("Invalid role")                                          # :245-256
        user = next((u for u in self.users if u["id"] == user_id), None)
        if user is None:
            raise bad_request(f"User with id '{user_id}' doesn't exist")               # :258-262
        target_roles = self.base_roles.get(user_id)                                     # :264-273 getWithRoles
        if "owner" in (target_roles or "").split(","):
            owners = sum(1 for r in self.base_roles.values() if "owner" in (r or ""))
            if owners == 1:
                raise bad_request("At least one owner is required")                    # :275-285
        if self.version == V2026 and role_power(req["roles"]) > self.caller_power():
            raise bad_request("Insufficient privilege to assign this role")            # [2026] @cb87bd27:410-418
        if role_power(target_roles) > self.caller_power():
            raise bad_request("Insufficient privilege to update user")                 # :287-289
        if user_id in self.base_roles:
            # models/BaseUser.ts:296-315 updateRoles: an UPDATE of the base mapping; a user
            # without one is updated nowhere, and the answer is the same.
            self.base_roles[user_id] = req["roles"]
        return {"msg": "The user has been updated successfully"}                       # controller :95-97

    def users_page(self):
        """controllers/base-users.controller.ts:30-50 and models/BaseUser.ts:191-262
        getUsersList: every user of the instance (nc_users LEFT JOIN this base's
        nc_base_users), `roles` null for those not in the base; `invite_token` only when the
        caller is the base's owner or creator. base-users.service.ts:35-45 gives only a count,
        so pageInfo says pageSize 25 and isLastPage false past 25 users, though the list is whole."""
        full = any(r in ("owner", "creator") for r in (self.base_roles.get(self.token_user["id"]) or "").split(","))
        users = []
        for u in self.users:
            row = dict(u, base_id=self.base["id"], roles=self.base_roles.get(u["id"]))
            if not full:
                del row["invite_token"]
            users.append(row)
        return {"users": paged(users, count=len(users), limit_max=self.limit_max)}

    def me(self):
        """modules/auth/auth.controller.ts:124-138 on /api/v2/auth/user/me with the API token:
        the token's user. Its base_roles stay null on this path in 0.258.3: only the v1 paths
        read `base_id` from the query (middlewares/extract-ids/extract-ids.middleware.ts:343-353)."""
        u = self.token_user
        return {"id": u["id"], "email": u["email"], "display_name": u["display_name"], "is_api_token": True,
                "roles": {r: True for r in u["main_roles"].split(",")}, "base_roles": None}

    # --- visibility ---------------------------------------------------------------------

    def visibility_list(self):
        """services/model-visibilities.service.ts:72-130: every view of every table, with
        `disabled` for each role."""
        result = []
        for t in self.tables.values():
            for v in self.views.values():
                if v["fk_model_id"] != t["id"]:
                    continue
                disabled = {r: bool(self.visibility.get((v["id"], r), False)) for r in VISIBILITY_ROLES}
                # [2026] the view's password masked, as in every copy of xcVisibilityMetaGet read
                # (tables.service.ts@f4e47b83:724-726, views.service.ts@f4e47b83:74-76).
                shown = v if self.version == V0258 else mask_password_2026(v)
                result.append(dict(shown, ptn=t["table_name"], _ptn=t["title"], ptype=t["type"], tn=v["title"],
                                   _tn=v["title"], table_meta=t["meta"], disabled=disabled))
        return result

    def visibility_set(self, validators, rules):
        """services/model-visibilities.service.ts:14-70 xcVisibilityMetaSetAll."""
        validators.validate_payload("VisibilityRuleReq", rules)                         # :22-25
        for d in rules:
            for role in (d.get("disabled") or {}):
                v = self.views.get(d.get("id"))
                if v is None:
                    # :33 View.get of an unknown id gives undefined; reading base_id throws.
                    raise bad_request("Cannot read properties of undefined (reading 'base_id')")
                if v["base_id"] != self.base["id"]:
                    raise bad_request("View does not belong to the base")               # :35-37
                if d["disabled"][role]:
                    self.visibility[(v["id"], role)] = True                             # :43-57
                else:
                    self.visibility.pop((v["id"], role), None)                          # :49-51
        return True


# packages/nocodb-sdk/src/lib/enums.ts:295-302 OrderedProjectRoles.
ORDERED_ROLES = ["owner", "creator", "editor", "commenter", "viewer", "no-access"]


def role_power(roles):
    """utils/roleHelper.ts:5-30 getProjectRolePower: -1 without base roles; the strongest
    role's rank otherwise, and 400 'Forbidden' when none of the roles is a base role."""
    if not roles:
        return -1
    ranks = [list(reversed(ORDERED_ROLES)).index(r) for r in roles.split(",") if r in ORDERED_ROLES]
    if not ranks:
        raise bad_request("Forbidden")
    return max(ranks)


def paged(items, count=None, limit=None, limit_max=1000):
    """helpers/PagedResponse.ts:5-47 with extractLimitAndOffset.ts:12-50: pageInfo only
    when a count is given; the page size is the limit clamped to [10, limitMax]; `page` of
    the query is never read."""
    if count is None:
        return {"list": items}
    size = limit if limit and limit > 0 else 25
    size = max(min(size, limit_max), 10)
    pages = -(-count // size) or 1
    return {"list": items, "pageInfo": {"totalRows": count, "page": 1, "pageSize": size,
                                        "isFirstPage": True, "isLastPage": 1 >= pages}}
