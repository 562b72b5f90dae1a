"""Message ids the pages build from what the API calls things (a field, a role, a job's state), marked here so
that `make messages` extracts them with the rest: ``N_`` only marks, the pages translate."""

from __future__ import annotations


def N_(message: str) -> str:  # gettext's conventional name: "mark, do not translate yet"
    return message


FIELDS = [N_("field:title"), N_("field:description"), N_("field:skills"), N_("field:deadline"),
          N_("field:why_next_step"), N_("field:display_name"), N_("field:vector"), N_("field:values"),
          N_("field:reputation"), N_("field:shared_fields"), N_("field:subject_id"), N_("field:quality"),
          N_("field:reliability"), N_("field:beyond"), N_("field:collaboration"), N_("field:comment"),
          N_("field:member_id"), N_("field:note"), N_("field:statement"), N_("field:motivation"),
          N_("field:facilitator_id"), N_("field:due_date"), N_("field:kpis"), N_("field:baseline"),
          N_("field:target"), N_("field:name"), N_("field:values"), N_("field:member_cap"), N_("field:role"),
          N_("field:reason"), N_("field:shares"), N_("field:referred_id"), N_("field:to_member_id"),
          N_("field:policy"), N_("field:questions"), N_("field:max_open_invitations"), N_("field:offer_ttl_seconds"),
          N_("field:partner_origin"), N_("field:partner_community_id"), N_("field:sends"), N_("field:receives"),
          N_("field:starts_at"), N_("field:ends_at"), N_("field:time_zone"), N_("field:kind"), N_("field:place"),
          N_("field:capacity"), N_("field:attendees"), N_("field:season"), N_("field:minimum_shares"),
          N_("field:price"), N_("field:amount"), N_("field:currency"), N_("field:barter"),
          N_("field:commitment_deadline"), N_("field:delivery_dates"), N_("field:help_shifts"), N_("field:date"),
          N_("field:hands"), N_("field:what"), N_("field:stage"), N_("field:portion_per_share"),
          N_("field:delivery_date"), N_("field:good"), N_("field:improve"), N_("field:digest_at"),
          N_("field:start"), N_("field:end"), N_("field:confirm")]
ROLES = [N_("role:owner"), N_("role:facilitator"), N_("role:member")]
FEEDBACK_SCALES = [N_("scale:quality"), N_("scale:reliability"), N_("scale:beyond"), N_("scale:collaboration")]
OFFERING_STATES = [N_("offering:open"), N_("offering:confirmed"), N_("offering:lapsed")]
PRICES = [N_("price:money"), N_("price:barter"), N_("price:none")]
SHORT_HARVEST = [N_("short:reduced-delivery"), N_("short:refund")]
COMMITMENTS = [N_("commitment:committed"), N_("commitment:withdrawn"), N_("commitment:released")]
GOAL_STATES = [N_("goal:active"), N_("goal:achieved"), N_("goal:abandoned")]
JOB_STATES = [N_("state:posted"), N_("state:assigned"), N_("state:in-progress"), N_("state:completed"),
              N_("state:cancelled")]
INTRODUCTION_STATES = [N_("introduction:made"), N_("introduction:accepted"), N_("introduction:declined")]
NOTIFICATION_KINDS = [N_("notify:place-offered"), N_("notify:application-decided"), N_("notify:application-received"),
                      N_("notify:job-offer"), N_("notify:job-assigned"), N_("notify:introduced"),
                      N_("notify:feedback-received"), N_("notify:session-promoted"), N_("notify:session-changed"),
                      N_("notify:webhook-disabled"), N_("notify:session-reminder"), N_("notify:offer-reminder"),
                      N_("notify:session-registered"), N_("notify:job-status"), N_("notify:introduction-outcome"),
                      N_("notify:goal-checkin-due"), N_("notify:offering-deadline"), N_("notify:offering-decided"),
                      N_("notify:offering-coming"), N_("notify:partner-job-match"), N_("notify:community-near-cap"),
                      N_("notify:partnership-proposed")]
# Input the schema refused, said from the error's type and limits (libs/kizuna/problems.py, ``errors[].type``).
INPUT_ERRORS = [N_("invalid:missing"), N_("invalid:string_too_short"), N_("invalid:string_too_long"),
                N_("invalid:too_short"), N_("invalid:too_long"), N_("invalid:extra_forbidden"),
                N_("invalid:greater_than_equal"), N_("invalid:less_than_equal"), N_("invalid:greater_than"),
                N_("invalid:less_than"), N_("invalid:int_parsing"), N_("invalid:int_from_float"),
                N_("invalid:float_parsing"), N_("invalid:date_parsing"), N_("invalid:date_from_datetime_parsing"),
                N_("invalid:datetime_parsing"), N_("invalid:datetime_from_date_parsing"), N_("invalid:literal_error"),
                N_("invalid:string_pattern_mismatch"), N_("invalid:bool_parsing"), N_("invalid:url_parsing"),
                N_("invalid:string_type"), N_("invalid:timezone_aware")]
