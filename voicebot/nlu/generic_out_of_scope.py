"""Requests no customer-service flow handles, per language: a background for the out-of-scope class.

A flow's own ``out_of_scope`` examples describe what its callers ask that it leaves to a person or
the website; they are few, and they cannot list everything else a caller might say. These
sentences fill in the rest of the world (banks, doctors, the council, travel, weather, small talk,
a wrong number, noise), so that the out-of-scope class is not only the flow's few examples.

They weigh less than the flow's own examples (``WEIGHT``): the operator's examples decide where
the flow's borders lie, these only keep the far side of them from being empty. A sentence that
resembles one of the flow's intent examples (``SIMILARITY_LIMIT``, cosine of word TF-IDF) is left
out for that flow: a bank's flow may well handle "ik wil geld opnemen". A language without an
entry simply gets no background. They are training material only; the held-out benchmark
sentences in benchmarks/data/ are never among them.
"""

from __future__ import annotations

from typing import Iterable

from voicebot.nlu.normalize import normalize

WEIGHT = 0.2
SIMILARITY_LIMIT = 0.6

EXAMPLES: dict[str, tuple[str, ...]] = {
    "nl": (
        "ik wil geld opnemen", "mijn bankpas is ingeslikt door de automaat", "kan ik een lening aanvragen",
        "wat is de rente op mijn spaarrekening", "ik wil een rekening openen voor mijn kind",
        "er is geld van mijn rekening gestolen", "ik wil een beleggingsrekening",
        "hoe hoog is mijn pensioen straks", "ik wil mijn inboedelverzekering aanpassen",
        "ik heb schade aan mijn auto gereden", "mijn reisverzekering moet verlengd worden",
        "ik wil een claim indienen bij de verzekering", "ik moet naar de dokter",
        "kan ik een afspraak maken bij de fysiotherapeut", "ik heb een recept nodig voor mijn medicijnen",
        "waar is de eerste hulp", "ik heb me gesneden en het bloedt erg", "mijn tand is afgebroken",
        "ik wil een afspraak bij de opticien", "hoe laat is het spreekuur van de dokter",
        "ik wil een uittreksel uit de basisregistratie", "ik moet mijn id kaart vernieuwen",
        "waar meld ik een kapotte lantaarnpaal", "wanneer komt de vuilniswagen",
        "ik wil een grofvuil afspraak maken", "hoe vraag ik een bouwvergunning aan",
        "ik wil trouwen op het stadhuis", "ik wil bezwaar maken tegen mijn wozwaarde",
        "wanneer krijg ik mijn belastingteruggave", "hoe zit het met mijn zorgtoeslag",
        "hoe laat vertrekt de intercity naar den haag", "ik heb mijn ov chipkaart verloren",
        "is er vertraging op het spoor", "ik wil een vlucht naar spanje boeken",
        "hoe kom ik bij het vliegveld", "mijn koffer is zoekgeraakt", "waar kan ik mijn auto parkeren",
        "hoe lang is de file bij utrecht", "ik wil een fiets huren", "wordt het morgen mooi weer",
        "hoe warm wordt het dit weekend", "gaat het vanavond sneeuwen", "hoe laat gaat de zon onder",
        "de hoeveelste is het vandaag", "wat is het laatste nieuws", "hoe heeft feyenoord gespeeld",
        "wanneer begint de formule een race", "wat is de uitslag van de verkiezingen",
        "ik heb honger waar kan ik eten", "ik wil sushi laten bezorgen",
        "heeft u nog plek in het restaurant vanavond", "ik wil een taart bestellen voor een verjaardag",
        "is de slager vandaag open", "is er een drogist in de buurt", "ik wil een nieuwe bank kopen",
        "hebben jullie deze schoenen in maat veertig", "ik wil een goedkoper mobiel abonnement",
        "ik heb geen bereik op mijn telefoon", "mijn glasvezel is nog steeds niet aangesloten",
        "de televisie heeft geen zenders meer", "mijn modem knippert rood",
        "ik wil een nieuwe telefoon met abonnement", "de wc is verstopt", "mijn dak lekt",
        "ik heb een glazenwasser nodig", "ik zoek een hovenier voor de tuin", "ik heb mezelf buitengesloten",
        "er zit een wespennest in de schuur", "mijn kat is ziek", "waar kan ik een puppy kopen",
        "de dierenarts is niet bereikbaar", "mijn auto start niet", "ik wil een apk keuring",
        "ik heb een lekke band op de snelweg", "mijn autosleutels zijn kwijt",
        "ik wil een tweedehands auto kopen", "kun je een liedje zingen", "vertel me iets leuks",
        "wat vind jij van het weer", "ben jij een robot", "hoe oud ben jij", "wat is de zin van het leven",
        "hoeveel is zeven keer acht", "hoe zeg je dankjewel in het frans",
        "wie heeft de mona lisa geschilderd", "hoe ver is de maan", "zet een wekker om zeven uur",
        "bel mijn vrouw", "stuur een berichtje naar mijn zus", "ik wil een boek lenen",
        "wanneer begint de schoolvakantie", "ik zoek een bijbaantje", "kan ik stage lopen bij jullie",
        "ik wil een open sollicitatie sturen", "wie is hier de baas", "ik wil een interview voor de krant",
        "kunt u een goede advocaat aanraden", "mijn buren hebben ruzie",
        "ik wil een melding doen bij de politie", "mijn telefoon is gestolen", "ik ben de weg kwijt",
        "waar is het station", "ik wil een kaartje voor het concert", "wanneer is de kermis",
        "kan ik een rondleiding krijgen", "ik wil een cadeau voor mijn moeder",
        "ik wil een bos bloemen laten bezorgen", "mijn kind wil een bijles",
        "waar is de dichtstbijzijnde geldautomaat", "ik wil van de sportschool af",
        "ik wil lid worden van de voetbalclub", "hallo hallo hoort u mij", "met wie heb ik het genoegen",
        "goedemorgen", "dag", "tot ziens", "ja", "nee", "oke", "ja ja", "ehm even denken", "wacht even",
        "sorry ik was even afgeleid", "momentje mijn andere telefoon gaat", "ik weet het niet",
        "laat maar zitten", "het maakt niet uit", "ik dacht dat ik iemand anders belde",
        "verkeerd nummer sorry", "u spreekt met het antwoordapparaat",
        "ik bel namens een marktonderzoeksbureau", "ik wil u iets verkopen", "is dit een reclame",
        "proberen proberen", "hallo is daar iemand", "kunt u iets harder praten", "ik versta u niet goed",
        "wat zei u", "herhaal dat nog eens", "praat eens nederlands",
    ),
    "en": (
        "i want to take some cash out", "the cash machine kept my card", "can i apply for a loan",
        "what interest do i get on my savings", "i want to open an account for my son",
        "someone has taken money from my account", "i want to invest in shares",
        "how much will my pension be", "i need to update my home insurance", "i had a car accident",
        "my travel insurance needs renewing", "i want to make an insurance claim", "i need to see a gp",
        "can i book a physio appointment", "i need a repeat prescription", "which hospital has an a and e",
        "i cut my hand and it will not stop bleeding", "i broke a tooth", "i need an eye test",
        "when is the surgery open", "i need a copy of my birth certificate", "my driving licence has expired",
        "i want to report a broken street light", "when are the bins collected",
        "i need a bulky waste collection", "how do i apply for planning permission",
        "i want to register a birth", "my council tax band is wrong", "when will i get my tax refund",
        "how do i apply for housing benefit", "when does the next bus to manchester leave",
        "i lost my oyster card", "are the trains running today", "i want to book a holiday to greece",
        "how do i get to heathrow", "the airline lost my suitcase", "where can i park my car",
        "is there traffic on the m twenty five", "i want to hire a bike", "will it be sunny tomorrow",
        "how hot will it get this weekend", "is it going to snow tonight", "what time is sunset",
        "what is the date today", "what is in the news today", "how did arsenal get on",
        "when is the next grand prix", "who won the election", "i am hungry where can i eat",
        "i want a curry delivered", "do you have a table free tonight", "i want to order a birthday cake",
        "is the butcher open today", "where is the nearest chemist", "my mobile contract is too expensive",
        "i have no signal on my phone", "my fibre still has not been connected",
        "the tv has lost all its channels", "my router light is flashing red",
        "i want a new phone on contract", "my toilet is blocked", "my roof is leaking",
        "i need a window cleaner", "i am looking for a gardener", "i have locked myself out",
        "there is a wasps nest in the shed", "my cat is poorly", "where can i buy a puppy",
        "the vet is not answering", "my car will not start", "i need an mot", "my car keys are lost",
        "i want to buy a used car", "can you sing a song", "say something funny", "are you a robot",
        "how old are you", "what is the meaning of life", "what is seven times eight",
        "how do you say thank you in french", "who painted the mona lisa", "how far away is the moon",
        "set an alarm for seven", "call my wife", "send a text to my sister",
        "i want to borrow a library book", "when do the school holidays start",
        "i am looking for a part time job", "can i do work experience with you",
        "i would like to send in my cv", "who is in charge there", "i am a journalist writing a story",
        "can you recommend a solicitor", "my neighbours are fighting", "i want to report a crime",
        "i have lost my phone", "i am lost", "where is the bus station", "i want tickets for the theatre",
        "when is the funfair in town", "can i get a tour of the building", "i need a present for my dad",
        "i want some flowers delivered", "my daughter needs a tutor", "i want to leave my gym",
        "i want to join a football team", "hello hello can you hear me", "who am i speaking to",
        "good morning", "goodbye", "see you", "yes", "no", "okay", "yeah yeah", "erm let me think",
        "hang on a minute", "sorry i got distracted", "one moment my other phone is ringing", "i do not know",
        "forget it", "it does not matter", "i think i called the wrong company",
        "this is an answering machine", "i am calling from a market research company",
        "i have something to sell you", "is this a sales call", "just testing", "is anyone there",
        "can you speak up", "i cannot hear you very well", "what did you say", "can you say that again",
    ),
}


def for_flow(language: str, intent_examples: Iterable[str]) -> list[str]:
    """The background sentences for a flow in ``language``, normalised, minus those too close to its intents.

    Imports scikit-learn: only a fit calls it.
    """
    background = [normalize(text, language) for text in EXAMPLES.get(language, ())]
    own = [normalize(text, language) for text in intent_examples]
    own = [text for text in own if text]
    if not background or not own:
        return background
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True).fit(own + background)
    similarity = (vectorizer.transform(background) @ vectorizer.transform(own).T).max(axis=1).toarray().ravel()
    return [text for text, closest in zip(background, similarity) if closest < SIMILARITY_LIMIT]
