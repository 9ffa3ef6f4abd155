"""What the assistant itself says, per language, when no flow text applies.

Flows write their own prompts; these are the few sentences the engine adds (confirmations,
"I did not hear you", the source of an answer, the summary for the agent). A flow may override
any of them under ``messages:``; a flow in a language without a pack here must give all of them,
which flow validation checks.

They are flow data (validation needs the keys, a loaded flow carries its resolved pack), so they
live with the flows; the dialog reads them through ``Flow.msg``.

The ``keys_*``, ``keypad_*`` and ``invalid_key`` sentences are for calls that go on by keypad
(no speech recognition): they replace every "say ..." with what to press, and 0 always reaches
a person.

``unreachable`` and ``unreachable_offer`` (1: a call back, 2: a text message), ``callback_booked``
and ``call_again`` are said by Twilio's voice when no agent takes a transferred call (see
telephony/unreachable.py).

``resume_offer`` (with the ``{topic}`` of the earlier call's intent) and ``resume_yes`` are said to a
caller who calls again after a call that stopped before it was done.

The ``verify_*`` sentences are a verify step's questions and what the caller hears about the check:
whether it worked, never the values, and never why it failed (``verify_locked`` is said alike for a
lockout, a directory that cannot answer and too many wrong answers).

``feedback_comment`` asks a caller who just gave a score for a few words more, only in a flow whose
feedback step says ``comment: true``.
"""

from __future__ import annotations

from voicebot.nlu.lexicon import TRANSFER_WORDS  # noqa: F401  (the built-in words, beside the messages)

MESSAGES: dict[str, dict[str, str]] = {
    "nl": {
        "confirm_intent": "U wilt {label}, klopt dat?",
        "confirm_value": "Ik heb {value} verstaan, klopt dat?",
        "not_understood": "Sorry, dat heb ik niet goed verstaan.",
        "out_of_scope": "Daar kan ik u helaas niet mee helpen.",
        "no_input": "Ik hoorde niets.",
        "confirm_no": "Excuses, dan vraag ik het opnieuw.",
        "source": "Deze informatie komt van {source}.",
        "transfer": "Ik verbind u door met een medewerker. Een moment alstublieft.",
        "sms_sent": "Ik heb u een samenvatting per sms gestuurd.",
        "sms_body": "Samenvatting van uw gesprek: {summary}",
        "feedback_thanks": "Bedankt voor uw beoordeling. Tot ziens.",
        "feedback_comment": "Dank u. Wilt u in een paar woorden zeggen waarom u dat cijfer geeft? "
                            "Wilt u dat liever niet, blijf dan even stil.",
        "goodbye": "Bedankt voor het bellen. Tot ziens.",
        "hint_digits": "Zegt u de cijfers één voor één, of toets ze in en sluit af met een hekje.",
        "hint_number": "Zegt u alleen het getal.",
        "hint_date": "Zegt u de datum, bijvoorbeeld: vijf maart negentienzeventig.",
        "hint_birth_date": "Zegt u uw geboortedatum, bijvoorbeeld: twaalf maart negentien vijfenzeventig.",
        "hint_house_number": "Zegt u alleen het huisnummer, met de letter als die er is, bijvoorbeeld: twaalf A.",
        "hint_pin": "Toets uw pincode in op uw telefoon en sluit af met een hekje. Zeg hem niet hardop.",
        "hint_yes_no": "Zegt u ja of nee.",
        "hint_postcode": "Zegt u de vier cijfers en de twee letters, bijvoorbeeld: twaalf vierendertig A B.",
        "hint_choice": "U kunt kiezen uit: {choices}.",
        "hint_text": "Vertelt u het in een paar woorden.",
        "hint_score": "Zegt of toets een cijfer van 1 tot 5.",
        "summary_intent": "Onderwerp: {label}.",
        "summary_no_intent": "Onderwerp nog niet bekend.",
        "summary_slots": "Gegevens: {slots}.",
        "summary_reason": "Doorverbonden omdat {reason}.",
        "reason_explicit_request": "de beller om een medewerker vroeg",
        "reason_low_confidence": "de assistent de beller niet goed begreep",
        "reason_no_input": "de beller geen antwoord gaf",
        "reason_loop_guard": "het gesprek te lang duurde",
        "reason_flow": "de vraag door een medewerker wordt afgehandeld",
        "reason_error": "er een technische storing was",
        "reason_after_hours": "het buiten openingstijden is",
        "sms_unavailable": "Uw nummer is afgeschermd, daarom kan ik u geen sms sturen.",
        "closed": "Onze medewerkers zijn nu niet bereikbaar.",
        "unreachable": "Er is op dit moment helaas niemand beschikbaar om uw gesprek aan te nemen.",
        "unreachable_offer": "Toets 1 als u teruggebeld wilt worden, of toets 2 voor een sms met uw vraag.",
        "callback_booked": "Wij bellen u zo snel mogelijk terug.",
        "call_again": "Belt u ons later nog eens.",
        "speech_unavailable": "Ik kan u nu helaas niet verstaan. Gebruik de toetsen van uw telefoon. "
                              "Wilt u een medewerker spreken? Toets dan op elk moment 0.",
        "keypad_menu_item": "toets {n} voor {label}",
        "keypad_menu": "{items}, of toets 0 voor een medewerker.",
        "keys_choice_item": "toets {n} voor {label}",
        "keys_digits": "Toets de cijfers in, gevolgd door een hekje.",
        "keys_digits_fixed": "Toets de {count} cijfers in.",
        "keys_number": "Toets het getal in, gevolgd door een hekje.",
        "keys_date": "Toets de datum in als acht cijfers: twee voor de dag, twee voor de maand "
                     "en vier voor het jaar.",
        "keys_yes_no": "Toets 1 voor ja of 2 voor nee.",
        "keys_postcode": "Toets alleen de vier cijfers van de postcode in, de letters niet.",
        "keys_score": "Toets een cijfer van 1 tot 5.",
        "invalid_key": "Die toets hoort niet bij de keuzes.",
        "postcode_digits_only": "{digits} (alleen de cijfers, ingetoetst)",
        "reason_no_speech": "de vraag alleen met spraak te beantwoorden is en spraakherkenning niet werkte",
        "yes": "ja",
        "no": "nee",
        "redacted": "[verborgen]",
        "provided": "opgegeven",
        "resume_offer": "U belde net over {topic}. Wilt u daarmee verder gaan?",
        "resume_yes": "Goed, we gaan verder.",
        "verify_customer_number": "Wat is uw klantnummer?",
        "verify_birth_date": "Wat is uw geboortedatum?",
        "verify_house_number": "Wat is uw huisnummer?",
        "verify_postcode": "En wat is uw postcode?",
        "verify_pin": "Toets uw pincode in, gevolgd door een hekje.",
        "verify_ok": "Dank u, dat klopt.",
        "verify_failed": "Dat klopt helaas niet.",
        "verify_locked": "Een medewerker helpt u hierbij verder. Ik verbind u door, een moment alstublieft.",
        "reason_verification_failed": "de identiteit van de beller niet kon worden vastgesteld",
        "summary_identity": "Identiteit: {level}, via {method}.",
        "summary_identity_none": "Identiteit: niet vastgesteld.",
        "summary_identity_attempts": "Controles: {attempts}.",
        "word_customer_number": "klantnummer",
        "word_house_number": "huisnummer",
        "word_caller_id": "nummerherkenning",
        "word_customer_dob": "klantnummer en geboortedatum",
        "word_postcode_house": "postcode en huisnummer",
        "word_pin": "pincode",
        "word_match": "klopte",
        "word_no_match": "klopte niet",
        "word_locked": "geblokkeerd na te veel pogingen",
        "word_unavailable": "niet te controleren",
        "word_none": "onbekend",
        "word_known": "bekend",
        "word_verified": "geverifieerd",
    },
    "en": {
        "confirm_intent": "You want to {label}, is that right?",
        "confirm_value": "I understood {value}, is that right?",
        "not_understood": "Sorry, I did not quite catch that.",
        "out_of_scope": "I am afraid I cannot help you with that.",
        "no_input": "I did not hear anything.",
        "confirm_no": "Sorry, let me ask again.",
        "source": "This information comes from {source}.",
        "transfer": "I am putting you through to a colleague. One moment please.",
        "sms_sent": "I have sent you a summary by text message.",
        "sms_body": "Summary of your call: {summary}",
        "feedback_thanks": "Thank you for your rating. Goodbye.",
        "feedback_comment": "Thank you. Would you like to say in a few words why you gave that score? "
                            "If not, just stay silent for a moment.",
        "goodbye": "Thank you for calling. Goodbye.",
        "hint_digits": "Please say the digits one by one, or key them in followed by the hash key.",
        "hint_number": "Please say just the number.",
        "hint_date": "Please say the date, for example: the fifth of March nineteen seventy.",
        "hint_birth_date": "Please say your date of birth, for example: the twelfth of March nineteen seventy-five.",
        "hint_house_number": "Please say just the house number, with its letter if it has one.",
        "hint_pin": "Please key in your PIN followed by the hash key. Please do not say it aloud.",
        "hint_yes_no": "Please say yes or no.",
        "hint_postcode": "Please say the four digits and the two letters.",
        "hint_choice": "You can choose from: {choices}.",
        "hint_text": "Please tell me in a few words.",
        "hint_score": "Say or key in a number from 1 to 5.",
        "summary_intent": "Topic: {label}.",
        "summary_no_intent": "Topic not known yet.",
        "summary_slots": "Details: {slots}.",
        "summary_reason": "Transferred because {reason}.",
        "reason_explicit_request": "the caller asked for an agent",
        "reason_low_confidence": "the assistant did not understand the caller",
        "reason_no_input": "the caller did not answer",
        "reason_loop_guard": "the call took too long",
        "reason_flow": "the request is handled by an agent",
        "reason_error": "of a technical problem",
        "reason_after_hours": "it is outside business hours",
        "sms_unavailable": "Your number is withheld, so I cannot send you a text message.",
        "closed": "Our agents are not available right now.",
        "unreachable": "I am sorry, nobody is available to take your call right now.",
        "unreachable_offer": "Press 1 to be called back, or press 2 for a text message with your question.",
        "callback_booked": "We will call you back as soon as we can.",
        "call_again": "Please call us again later.",
        "speech_unavailable": "I am sorry, I cannot hear what you say right now. Please use the keys on your "
                              "phone. To speak to an agent, press 0 at any time.",
        "keypad_menu_item": "press {n} to {label}",
        "keypad_menu": "{items}, or press 0 for an agent.",
        "keys_choice_item": "press {n} for {label}",
        "keys_digits": "Please key in the digits, followed by the hash key.",
        "keys_digits_fixed": "Please key in the {count} digits.",
        "keys_number": "Please key in the number, followed by the hash key.",
        "keys_date": "Please key in the date as eight digits: two for the day, two for the month "
                     "and four for the year.",
        "keys_yes_no": "Press 1 for yes or 2 for no.",
        "keys_postcode": "Please key in only the four digits of the postcode, not the letters.",
        "keys_score": "Press a number from 1 to 5.",
        "invalid_key": "That key is not one of the options.",
        "postcode_digits_only": "{digits} (digits only, keyed in)",
        "reason_no_speech": "the question needs speech and speech recognition was not working",
        "yes": "yes",
        "no": "no",
        "redacted": "[redacted]",
        "provided": "provided",
        "resume_offer": "You called just now about {topic}. Would you like to continue?",
        "resume_yes": "All right, let us carry on.",
        "verify_customer_number": "What is your customer number?",
        "verify_birth_date": "What is your date of birth?",
        "verify_house_number": "What is your house number?",
        "verify_postcode": "And what is your postcode?",
        "verify_pin": "Please key in your PIN, followed by the hash key.",
        "verify_ok": "Thank you, that is correct.",
        "verify_failed": "I am sorry, that is not correct.",
        "verify_locked": "A colleague will help you with this. I am putting you through, one moment please.",
        "reason_verification_failed": "the caller's identity could not be verified",
        "summary_identity": "Identity: {level}, by {method}.",
        "summary_identity_none": "Identity: not verified.",
        "summary_identity_attempts": "Checks: {attempts}.",
        "word_customer_number": "customer number",
        "word_house_number": "house number",
        "word_caller_id": "caller ID",
        "word_customer_dob": "customer number and date of birth",
        "word_postcode_house": "postcode and house number",
        "word_pin": "PIN",
        "word_match": "matched",
        "word_no_match": "did not match",
        "word_locked": "locked after too many attempts",
        "word_unavailable": "could not be checked",
        "word_none": "unknown",
        "word_known": "known",
        "word_verified": "verified",
    },
}

MESSAGE_KEYS = frozenset(k for k in MESSAGES["en"] if not k.startswith("word_"))
"""Every message a flow in a language without a pack here must give. The ``word_*`` entries are
optional: how a slot, method, outcome or level name reads in a summary (``word_customer_number``
-> "klantnummer"); without one the name is shown with spaces for underscores."""
IDENTITY_KEYS = frozenset(k for k in MESSAGE_KEYS if k.startswith(("verify_", "summary_identity"))) | {
    "reason_verification_failed"}
"""Messages only a flow with a verify step uses (a flow in another language gives them only then)."""
COMMENT_KEYS = frozenset({"feedback_comment"})
"""Messages only a flow whose feedback step asks for a comment uses."""

# Words with which a caller asks for a person, per language. The flow's own ``transfer_words``
# come first, then ``dialog.transfer_words`` in config.yaml; these are the built-in default
# (config.py's default is this same table).


def messages_for(language: str, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The message pack for ``language`` with a flow's overrides applied (may be incomplete)."""
    return {**MESSAGES.get(language, {}), **(overrides or {})}
