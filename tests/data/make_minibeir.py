# ruff: noqa: E501  (data: one sentence per line reads better than wrapped strings)
"""Writes tests/data/minibeir/: a small labelled BEIR-format set written for sparsebridge's tests.

20 topics; per topic one query, two documents that answer it (grade 2), two that are on the topic
without answering it (grade 1) and three distractors that share words with it but are about
something else (unjudged). 140 documents, 20 queries. Run: python tests/data/make_minibeir.py
"""

from __future__ import annotations

import json
from pathlib import Path

# topic: (query, [grade 2, grade 2], [grade 1, grade 1], [distractor x 3])
TOPICS: dict[str, tuple[str, list[str], list[str], list[str]]] = {
    "mars": (
        "why is mars red",
        [
            "Mars looks red because iron oxide, rust, covers the dust and rocks of its surface.",
            "The red colour of Mars comes from iron minerals in its soil that oxidised long ago.",
        ],
        [
            "Mars is the fourth planet from the Sun and has two small moons, Phobos and Deimos.",
            "Olympus Mons on Mars is the tallest volcano known in the solar system.",
        ],
        [
            "A red sunset happens when sunlight crosses more air and blue light is scattered away.",
            "Red wine gets its colour from the skins of dark grapes during fermentation.",
            "The planet Venus is covered by thick clouds of sulfuric acid.",
        ],
    ),
    "bread": (
        "how does yeast make bread rise",
        [
            "Yeast ferments the sugars in dough and releases carbon dioxide gas that makes bread rise.",
            "Bubbles of carbon dioxide from yeast are trapped by gluten, so the dough expands and rises.",
        ],
        [
            "Sourdough bread uses a starter of wild yeast and lactic acid bacteria.",
            "Bread flour has more protein than cake flour, which gives a chewier crumb.",
        ],
        [
            "Hot air rises because it is less dense than the cooler air around it.",
            "Interest rates rise when the central bank wants to slow inflation.",
            "Brewers use yeast to turn malted barley into beer.",
        ],
    ),
    "nile": (
        "longest river in africa",
        [
            "The Nile is the longest river in Africa, flowing north for about 6,650 kilometres.",
            "At roughly 6,650 km the Nile is Africa's longest river and ends in a delta in Egypt.",
        ],
        [
            "The Congo River is the deepest river in the world and drains central Africa.",
            "Lake Victoria is a source of the White Nile.",
        ],
        [
            "The Amazon carries more water than any other river on Earth.",
            "Africa has 54 countries and more than a billion people.",
            "The longest bridge in the world crosses rice paddies in China.",
        ],
    ),
    "photosynthesis": (
        "how do plants make food from sunlight",
        [
            "In photosynthesis, plants use light energy to turn carbon dioxide and water into glucose.",
            "Chlorophyll in leaves absorbs sunlight, which powers the making of sugar from CO2 and water.",
        ],
        [
            "Plants release oxygen as a by-product of photosynthesis.",
            "Leaves are green because chlorophyll reflects green light.",
        ],
        [
            "Solar panels convert sunlight directly into electricity.",
            "Food trucks serve meals at street festivals.",
            "Houseplants need to be watered less often in winter.",
        ],
    ),
    "vaccine": (
        "how do vaccines train the immune system",
        [
            "A vaccine shows the immune system a harmless piece of a pathogen so it makes antibodies and memory cells.",
            "Vaccines train immunity: B cells and T cells learn to recognise an antigen without causing disease.",
        ],
        [
            "Edward Jenner developed the smallpox vaccine in 1796.",
            "Some vaccines need booster doses to keep immunity strong.",
        ],
        [
            "Athletes train for months before running a marathon.",
            "The train from Paris to Lyon takes about two hours.",
            "Antivirus software protects computers from malicious programs.",
        ],
    ),
    "python-gil": (
        "python global interpreter lock threads",
        [
            "The global interpreter lock in CPython lets only one thread execute Python bytecode at a time.",
            "Because of the GIL, CPU-bound Python threads do not run in parallel; use processes instead.",
        ],
        [
            "Python's asyncio runs many coroutines on a single thread with an event loop.",
            "The multiprocessing module starts separate Python processes with their own memory.",
        ],
        [
            "A ball python is a small constrictor snake from west Africa.",
            "Door locks with a deadbolt are harder to force open.",
            "Threads of cotton are spun into yarn before weaving.",
        ],
    ),
    "coffee": (
        "caffeine effects on sleep",
        [
            "Caffeine blocks adenosine receptors, which delays sleepiness and can reduce deep sleep.",
            "Drinking coffee late in the day makes it harder to fall asleep because caffeine stays for hours.",
        ],
        [
            "Espresso is brewed by forcing hot water through finely ground coffee.",
            "Tea also contains caffeine, usually less than coffee.",
        ],
        [
            "Bears sleep through much of the winter in dens.",
            "Sleep mode on a laptop saves power while keeping the session open.",
            "Coffee beans are the seeds of a cherry-like fruit.",
        ],
    ),
    "tides": (
        "what causes ocean tides",
        [
            "Ocean tides are caused mainly by the Moon's gravity pulling on the Earth's water.",
            "The gravitational pull of the Moon, and to a lesser degree the Sun, raises the tides twice a day.",
        ],
        [
            "Spring tides happen at full and new moon when the Sun and Moon line up.",
            "The Bay of Fundy in Canada has the highest tides in the world.",
        ],
        [
            "Ocean currents like the Gulf Stream carry warm water north.",
            "A rising tide of prices worried shoppers this year.",
            "The Moon has no atmosphere and its sky is black.",
        ],
    ),
    "rust": (
        "rust programming language memory safety",
        [
            "Rust guarantees memory safety without a garbage collector through ownership and borrowing.",
            "The Rust borrow checker rejects programs with dangling pointers or data races at compile time.",
        ],
        [
            "Cargo is Rust's package manager and build tool.",
            "Rust was started at Mozilla and reached version 1.0 in 2015.",
        ],
        [
            "Rust forms on iron when it reacts with oxygen and water.",
            "Memory foam mattresses were developed from NASA research.",
            "Safety rules on building sites require helmets.",
        ],
    ),
    "everest": (
        "height of mount everest",
        [
            "Mount Everest is 8,849 metres high, the highest mountain above sea level.",
            "The official height of Everest, agreed by Nepal and China in 2020, is 8,848.86 metres.",
        ],
        [
            "Tenzing Norgay and Edmund Hillary first reached the summit of Everest in 1953.",
            "Everest lies in the Himalayas on the border between Nepal and Tibet.",
        ],
        [
            "Mauna Kea is taller than Everest if measured from its base on the ocean floor.",
            "The height of a tree can be estimated from the length of its shadow.",
            "Mount Fuji is an active volcano in Japan.",
        ],
    ),
    "dna": (
        "structure of dna double helix",
        [
            "DNA is a double helix: two strands of nucleotides wound around each other, paired A-T and G-C.",
            "Watson and Crick described the double helix structure of DNA in 1953, using Franklin's X-ray data.",
        ],
        [
            "Genes are stretches of DNA that code for proteins.",
            "RNA is usually single stranded and uses uracil instead of thymine.",
        ],
        [
            "A spiral staircase winds around a central column.",
            "The structure of a sonnet is fourteen lines.",
            "Helicopters use a rotor instead of fixed wings.",
        ],
    ),
    "inflation": (
        "what causes inflation",
        [
            "Inflation happens when too much money chases too few goods, so prices rise across the economy.",
            "Demand growing faster than supply, and rising costs of energy and wages, cause inflation.",
        ],
        [
            "Central banks raise interest rates to bring inflation down.",
            "The consumer price index measures inflation in a basket of goods.",
        ],
        [
            "Inflating a bicycle tyre to the right pressure prevents flats.",
            "The universe underwent cosmic inflation just after the Big Bang.",
            "Prices of concert tickets vary with the seat.",
        ],
    ),
    "volcano": (
        "why do volcanoes erupt",
        [
            "Volcanoes erupt when pressure from gas-rich magma rising from below breaks through the crust.",
            "Dissolved gases in magma expand as it rises, and the pressure drives an eruption.",
        ],
        [
            "Most volcanoes form at the edges of tectonic plates.",
            "Lava is magma that has reached the surface.",
        ],
        [
            "Arguments erupt at family dinners over politics.",
            "Hot springs are heated by geothermal energy.",
            "A pressure cooker cooks food faster by raising the boiling point.",
        ],
    ),
    "black-hole": (
        "what is a black hole",
        [
            "A black hole is a region of space where gravity is so strong that nothing, not even light, escapes.",
            "Black holes form when massive stars collapse; beyond the event horizon light cannot escape.",
        ],
        [
            "The first image of a black hole, in the galaxy M87, was published in 2019.",
            "Sagittarius A* is the supermassive black hole at the centre of the Milky Way.",
        ],
        [
            "A black cat crossed the road in the old story.",
            "A hole in the ozone layer forms over Antarctica each spring.",
            "Dark matter does not emit or absorb light.",
        ],
    ),
    "sql-index": (
        "how does a database index speed up queries",
        [
            "A database index, usually a B-tree, lets the engine find rows without scanning the whole table.",
            "Indexes speed up SQL queries by keeping sorted keys that point to rows, at a cost on writes.",
        ],
        [
            "A SQL join combines rows from two tables on a related column.",
            "Query planners choose between an index scan and a sequential scan.",
        ],
        [
            "The index of a book lists topics and page numbers.",
            "Stock market indexes track the value of many companies.",
            "Speed cameras catch drivers above the limit.",
        ],
    ),
    "honeybee": (
        "how do bees make honey",
        [
            "Bees collect nectar, add enzymes and evaporate the water in the hive until it becomes honey.",
            "Worker bees store nectar in wax cells and fan their wings to dry it into honey.",
        ],
        [
            "A honeybee colony has one queen, thousands of workers and some drones.",
            "Bees pollinate many crops while collecting nectar.",
        ],
        [
            "Maple syrup is made by boiling the sap of maple trees.",
            "Spelling bees are competitions for school children.",
            "Wasps build paper nests from chewed wood.",
        ],
    ),
    "tcp": (
        "difference between tcp and udp",
        [
            "TCP is connection oriented and guarantees ordered, reliable delivery; UDP sends datagrams without guarantees.",
            "Unlike UDP, TCP retransmits lost packets and controls congestion, so it is slower but reliable.",
        ],
        [
            "DNS queries usually travel over UDP on port 53.",
            "The TCP three-way handshake uses SYN, SYN-ACK and ACK.",
        ],
        [
            "The difference between weather and climate is the time scale.",
            "Packets of seeds are sold in garden centres.",
            "Ports are harbours where ships load and unload.",
        ],
    ),
    "greenhouse": (
        "greenhouse effect global warming",
        [
            "Greenhouse gases such as carbon dioxide trap heat radiated by the Earth, warming the planet.",
            "Burning fossil fuels adds CO2, which strengthens the greenhouse effect and drives global warming.",
        ],
        [
            "Methane is a stronger greenhouse gas than carbon dioxide over twenty years.",
            "Global average temperature has risen about 1.2 degrees since pre-industrial times.",
        ],
        [
            "A greenhouse lets gardeners grow tomatoes in cold climates.",
            "Warming up before exercise lowers the risk of injury.",
            "Global trade grew quickly after container ships appeared.",
        ],
    ),
    "chess": (
        "how does the knight move in chess",
        [
            "In chess the knight moves in an L shape: two squares in one direction and then one square sideways.",
            "A knight jumps two squares straight and one to the side, and it is the only piece that can jump over others.",
        ],
        [
            "Each player starts a chess game with two knights, next to the rooks.",
            "Castling moves the king two squares toward a rook.",
        ],
        [
            "Knights in medieval Europe served a lord in exchange for land.",
            "Moving house is easier with a checklist.",
            "Checkers is played on the same board as chess.",
        ],
    ),
    "antibiotics": (
        "do antibiotics work against viruses",
        [
            "Antibiotics kill bacteria or stop them growing; they do not work against viruses such as the flu.",
            "Viruses have no cell wall or ribosomes for antibiotics to target, so antibiotics cannot treat viral infections.",
        ],
        [
            "Penicillin was discovered by Alexander Fleming in 1928.",
            "Overuse of antibiotics leads to resistant bacteria.",
        ],
        [
            "Computer viruses spread through infected email attachments.",
            "Antiseptic wipes clean surfaces before a meal.",
            "Viral videos can reach millions of views in a day.",
        ],
    ),
}


def main() -> None:
    out = Path(__file__).with_name("minibeir")
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for topic, (query, answers, related, distractors) in TOPICS.items():
        queries.append({"_id": f"q-{topic}", "text": query})
        for grade, texts in ((2, answers), (1, related), (0, distractors)):
            for n, text in enumerate(texts):
                doc_id = f"{topic}-{grade}{n}"
                corpus.append({"_id": doc_id, "title": topic.replace("-", " "), "text": text})
                if grade:
                    qrels.append(f"q-{topic}\t{doc_id}\t{grade}")
    (out / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus), encoding="utf-8")
    (out / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries), encoding="utf-8")
    (out / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
