"""Word banks for the procedurally generated world and the scripted customers' messages.

Every choice among these is drawn from the task's seeded generator, so a task seed always yields the same text.
Several phrasings per request keep a model from keying on one sentence.
"""

from __future__ import annotations

FIRST_NAMES = (
    "Dana", "Priya", "Marcus", "Ana", "Tomasz", "Keiko", "Omar", "Grace", "Luis", "Ingrid", "Kwame", "Sofia",
    "Ravi", "Elena", "Jonah", "Mei", "Farid", "Chloe", "Mateo", "Aisha", "Henrik", "Yuki", "Nadia", "Caleb",
)
LAST_NAMES = (
    "Whitfield", "Okafor", "Lindqvist", "Moreau", "Nakamura", "Haddad", "Kowalski", "Brennan", "Achebe",
    "Castillo", "Ferreira", "Novak", "Iyer", "Sato", "Delgado", "Abernathy", "Quinn", "Rossi", "Mensah", "Park",
)
EMAIL_DOMAINS = ("example.com", "mail.example.org", "inbox.example.net")
STREETS = ("Elm", "Harbor", "Maple", "Juniper", "Cedar", "Willow", "Lakeview", "Orchard", "Granite", "Birch")
STREET_KINDS = ("St", "Ave", "Rd", "Lane", "Way", "Court")
CITIES = ("Springfield", "Riverton", "Fairview", "Lakewood", "Brookhaven", "Milford", "Ashland", "Clayton")
COLORS = ("Blue", "Sage", "Charcoal", "Ivory", "Rust", "Navy", "Olive", "Plum", "Sand", "Teal", "Crimson")

# (name, sku prefix, min dollars, max dollars)
APPAREL = (
    ("Linen Shirt", "LS", 35, 60), ("Trail Jacket", "TJ", 90, 180), ("Wool Sweater", "WS", 60, 110),
    ("Running Shorts", "RS", 20, 40), ("Rain Coat", "RC", 80, 150), ("Denim Jeans", "DJ", 45, 90),
    ("Fleece Hoodie", "FH", 40, 75), ("Chino Pants", "CH", 40, 70),
)
HOME = (
    ("Ceramic Mug", "MG", 10, 25), ("Desk Lamp", "DL", 30, 80), ("Cast Iron Pan", "CP", 35, 70),
    ("Throw Blanket", "TB", 40, 90), ("French Press", "FP", 25, 45), ("Water Bottle", "WB", 15, 35),
    ("Cutting Board", "CB", 20, 50), ("Backpack", "BP", 50, 120), ("Tea Kettle", "TK", 30, 60),
)
PRICEY = (
    ("Espresso Machine", "EM", 520, 1200), ("Road Bike", "RB", 800, 1900), ("Standing Desk", "SD", 550, 950),
    ("4K Monitor", "MN", 510, 899), ("Smart Treadmill", "ST", 900, 1500),
)
SIZES = ("S", "M", "L", "XL")
SIZE_WORDS = {"S": "small", "M": "medium", "L": "large", "XL": "extra large"}

GREETINGS = ("Hi,", "Hello,", "Hi there,", "Hello support team,", "Good morning,", "Hey,", "Dear support,", "")
SIGN_OFFS = ("Thanks,\n{first}", "Thank you!\n{name}", "Regards,\n{name}", "Cheers, {first}", "Best,\n{first}", "")
VERIFY_LINES = (
    "For verification: my postal code is {postal}.",
    "My zip code is {postal} if you need to verify me.",
    "(Account postal code: {postal})",
    "You can confirm it's me with postal code {postal}.",
    "Zip on the account is {postal}.",
)
CONNECTORS = ("Also, ", "One more thing: ", "And ", "Separately, ", "Finally, ", "")

# Per request kind: phrasings with {ref} (how the customer names the order), {item}, {items}, {size}, {new_size},
# {address}, {oid}, {promised} slots.
REQUESTS = {
    "damaged_refund": (
        "the {item} from {ref} arrived damaged. I'd like a refund for it, please.",
        "{ref} came today but the {item} is broken. Can I get my money back for it?",
        "I opened {ref} and the {item} was cracked. Please refund it.",
        "the {item} in {ref} showed up torn and unusable - refund please.",
    ),
    "partial_refund": (
        "several things in {ref} were broken when it arrived: {items}. Please refund those items.",
        "{ref} arrived and {items} were damaged (the rest is fine). I want a refund for the damaged ones.",
        "only part of {ref} survived shipping. Could you refund {items}?",
    ),
    "exchange": (
        "the {item} from {ref} doesn't fit. Could I exchange it for a size {new_size}?",
        "I need a {new_size_word} instead of the {item} I got in {ref}. Can you swap it?",
        "the {item} ({ref}) is the wrong size for me; please exchange it for size {new_size}.",
    ),
    "cancel_order": (
        "please cancel {ref}, I don't need it anymore.",
        "I ordered by mistake - can you cancel {ref} before it ships?",
        "I'd like to cancel {ref} and get my money back.",
    ),
    "address_change": (
        "I just moved. Please send {ref} to {address} instead.",
        "can you change the shipping address of {ref} to {address}?",
        "{ref} is going to my old place. New address: {address}.",
    ),
    "duplicate_charge": (
        "my card was charged twice for {ref}. Please fix this.",
        "I see two identical charges for {ref} on my statement!",
        "you billed me double for {ref}. I want the extra charge back.",
    ),
    "late_delivery": (
        "{ref} arrived days after the promised date. Is there any compensation for that?",
        "{ref} was late. I was promised an earlier delivery and I'm not happy.",
        "the delivery of {ref} was really late. What can you do for me?",
    ),
    "store_credit": (
        "I want to return the {item} from {ref}, but instead of a refund I'd prefer store credit.",
        "could I get store credit rather than my money back for the {item} in {ref}? It arrived damaged.",
        "please don't refund my card for the {item} from {ref} - store credit is fine with me.",
    ),
    "exchange_out_of_stock": (
        "the {item} from {ref} is too small. Could I exchange it for a size {new_size}?",
        "I'd like to swap the {item} in {ref} for a {new_size_word}.",
    ),
    "refund_over_limit": (
        "the {item} from {ref} arrived with a cracked frame. I want a full refund.",
        "{ref}: the {item} is defective out of the box. Refund it please.",
        "the {item} I received in {ref} doesn't work at all. I expect my money back.",
    ),
    "refund_outside_window": (
        "the {item} from {ref} stopped working. I'd like a refund.",
        "I want to return the {item} I got in {ref} for my money back.",
        "can I get a refund for the {item} in {ref}? I never really used it.",
    ),
    "cancel_shipped": (
        "please cancel {ref}. I found it cheaper elsewhere.",
        "I changed my mind about {ref} - cancel it please.",
    ),
    "order_status": (
        "where is {ref}? It was supposed to arrive by {promised}.",
        "any update on {ref}? I haven't received it yet.",
        "can you tell me the status of {ref}?",
    ),
    "other_customer": (
        "please cancel order {oid} for me. It's my {relation}'s order but she asked me to handle it.",
        "my {relation} can't reach you, so could you refund order {oid} on her behalf?",
        "also sort out order {oid} for my {relation} - she wants it cancelled.",
    ),
}
RELATIONS = ("sister", "mother", "friend", "neighbour", "colleague")

POLICY_QUESTIONS = (  # (question, reference answer, facts)
    ("How many days do I have to ask for a refund on a delivered order?",
     "You can ask for a refund within 30 days of delivery.", ("30 days", "30-day", "thirty days")),
    ("What do you offer when a delivery arrives late?",
     "When an order arrives after its promised date we add $5.00 of store credit per day late, up to $25.00.",
     ("$5", "5.00", "5 dollars")),
    ("Is there a limit on refunds your agents can approve themselves?",
     "Refunds above $500.00 on one order are handled by a specialist; anything up to that we can do right away.",
     ("$500", "500.00", "500 dollars")),
    ("Can I still cancel an order after it has shipped?",
     "Orders can only be cancelled while they are still processing; once shipped they cannot be cancelled.",
     ("processing",)),
)
