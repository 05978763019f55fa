#!/usr/bin/env python3
"""Writes configs/data/probe.jsonl: the project's probe set (6 categories, >= 300 prompts).

Each record: {"prompt": ..., "target": ..., "text": prompt + target, "category": ...}. The
target is the expected continuation; its first token is the logit-lens target
(docs/METRICS.md). Written for sweepd from fact tables below; deterministic.
"""
import json
import os
import random

rng = random.Random(20261124)
records = []


def add(category, prompt, target):
    records.append({"prompt": prompt, "target": target, "text": prompt + target,
                    "category": category})


capitals = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
            ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("Egypt", "Cairo"),
            ("Russia", "Moscow"), ("Greece", "Athens"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
            ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"),
            ("Austria", "Vienna"), ("Hungary", "Budapest"), ("Ireland", "Dublin"),
            ("Canada", "Ottawa"), ("Mexico", "Mexico City"), ("Peru", "Lima"),
            ("Chile", "Santiago"), ("Argentina", "Buenos Aires"), ("Kenya", "Nairobi"),
            ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"),
            ("Turkey", "Ankara"), ("Iran", "Tehran"), ("Iraq", "Baghdad"),
            ("Cuba", "Havana"), ("Belgium", "Brussels"), ("the Netherlands", "Amsterdam"),
            ("Switzerland", "Bern"), ("Australia", "Canberra"), ("New Zealand", "Wellington"),
            ("South Korea", "Seoul"), ("the Philippines", "Manila"), ("Colombia", "Bogotá"),
            ("Ukraine", "Kyiv"), ("Romania", "Bucharest"), ("Bulgaria", "Sofia"),
            ("Czechia", "Prague"), ("Iceland", "Reykjavik"), ("Morocco", "Rabat"),
            ("Ethiopia", "Addis Ababa"), ("Nigeria", "Abuja"), ("India", "New Delhi"),
            ("Pakistan", "Islamabad"), ("Bangladesh", "Dhaka")]
for country, capital in capitals:
    add("factual", f"The capital of {country} is", " " + capital)
elements = [("H", "hydrogen"), ("He", "helium"), ("O", "oxygen"), ("N", "nitrogen"),
            ("C", "carbon"), ("Fe", "iron"), ("Au", "gold"), ("Ag", "silver"), ("Na", "sodium"),
            ("K", "potassium")]
for symbol, name in elements:
    add("factual", f"The chemical element with the symbol {symbol} is called", " " + name)

for _ in range(55):
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    op = rng.choice(["+", "-", "*"])
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    add("arithmetic", f"Q: What is {a} {op} {b}?\nA: {a} {op} {b} =", f" {value}")

code = [
    ("import numpy as", " np"), ("import pandas as", " pd"),
    ("import matplotlib.pyplot as", " plt"), ("import tensorflow as", " tf"),
    ("if __name__ == \"__main__", "\":"), ("for i in range(len(items", ")):"),
    ("with open(path, \"r\") as", " f"), ("def __init__(self", ","),
    ("print(\"Hello, world", "!\")"), ("return a +", " b"),
    ("#include <stdio", ".h>"), ("int main(int argc, char", "**"),
    ("std::vector<int> values;\nvalues.push", "_back"), ("public static void", " main"),
    ("System.out.", "println"), ("console.", "log"), ("SELECT * FROM", " users"),
    ("git commit -", "m"), ("const express = require('", "express"),
    ("fn main()", " {"), ("let mut", " x"), ("while (true", ")"),
    ("except Exception as", " e"), ("raise ValueError(", "\""),
    ("x = [1, 2, 3]\nprint(len(x", "))"), ("from collections import", " defaultdict"),
    ("df.groupby(\"category\").", "mean"), ("np.zeros((3,", " 3"),
    ("for key, value in config.", "items"), ("assert result ==", " expected"),
    ("self.assertEqual(result,", " expected"), ("<html>\n<head>\n<title", ">"),
    ("</div>\n</body>\n</", "html"), ("SELECT name, COUNT(*) FROM orders GROUP", " BY"),
    ("CREATE TABLE", " users"), ("docker run -", "it"), ("pip install", " numpy"),
    ("npm install --save", "-dev"), ("async function fetchData() {\n  const response = await",
                                      " fetch"),
    ("try {\n  doWork();\n} catch (", "e"), ("lambda x: x *", " 2"),
    ("sorted(words, key=", "len"), ("torch.nn.", "Linear"), ("model.eval", "()"),
    ("optimizer.zero", "_grad"), ("loss.", "backward"), ("git checkout -", "b"),
    ("chmod +", "x"), ("echo $", "PATH"), ("#!/usr/bin/env", " python"),
]
for prompt, target in code:
    add("code", prompt, target)

words = [("dog", "chien", "perro", "Hund"), ("cat", "chat", "gato", "Katze"),
         ("house", "maison", "casa", "Haus"), ("water", "eau", "agua", "Wasser"),
         ("book", "livre", "libro", "Buch"), ("sun", "soleil", "sol", "Sonne"),
         ("moon", "lune", "luna", "Mond"), ("bread", "pain", "pan", "Brot"),
         ("friend", "ami", "amigo", "Freund"), ("tree", "arbre", "árbol", "Baum"),
         ("city", "ville", "ciudad", "Stadt"), ("night", "nuit", "noche", "Nacht"),
         ("red", "rouge", "rojo", "rot"), ("green", "vert", "verde", "grün"),
         ("school", "école", "escuela", "Schule"), ("apple", "pomme", "manzana", "Apfel"),
         ("thank you", "merci", "gracias", "danke")]
for english, french, spanish, german in words:
    add("multilingual", f"English: {english}\nFrench:", " " + french)
    add("multilingual", f"English: {english}\nSpanish:", " " + spanish)
    add("multilingual", f"English: {english}\nGerman:", " " + german)

chats = [
    ("Thank you so much for your help!", "You're", " welcome"),
    ("Good morning! How are you today?", "I'm", " doing"),
    ("Can you help me with something?", "Of", " course"),
    ("I just passed my exam!", "Congratulations", "!"),
    ("Sorry, I have to go now.", "No", " problem"),
    ("What's your name?", "My", " name"),
    ("Have a nice weekend!", "Thanks", ","),
    ("I'm feeling a bit tired today.", "I'm", " sorry"),
    ("Could you repeat that, please?", "Sure", ","),
    ("Do you like music?", "Yes", ","),
    ("Goodbye!", "Goodbye", "!"),
    ("Happy birthday!", "Thank", " you"),
    ("Is it going to rain tomorrow?", "I", " don"),
    ("How do I reset my password?", "To", " reset"),
    ("Tell me a joke.", "Why", " did"),
    ("What time is it?", "I", " don"),
    ("I lost my keys again.", "Oh", " no"),
    ("Let's meet at noon.", "Sounds", " good"),
    ("Nice to meet you.", "Nice", " to"),
    ("Are you there?", "Yes", ","),
    ("Merry Christmas!", "Merry", " Christmas"),
    ("I need some advice about cooking pasta.", "Sure", "!"),
    ("Can you recommend a good book?", "Sure", "!"),
    ("How was your day?", "It", " was"),
    ("Please explain recursion simply.", "Recursion", " is"),
]
for user, start, target in chats:
    add("conversational", f"User: {user}\nAssistant: {start}", target)
    add("conversational", f"<start_of_turn>user\n{user}<end_of_turn>\n<start_of_turn>model\n{start}",
        target)

idioms = [("The early bird catches the", " worm"), ("Actions speak louder than", " words"),
          ("A picture is worth a thousand", " words"), ("Better late than", " never"),
          ("Every cloud has a silver", " lining"), ("Don't count your chickens before they",
                                                    " hatch"),
          ("When in Rome, do as the Romans", " do"), ("Practice makes", " perfect"),
          ("Rome wasn't built in a", " day"), ("All that glitters is not", " gold"),
          ("The pen is mightier than the", " sword"), ("Where there's smoke, there's", " fire"),
          ("An apple a day keeps the doctor", " away"), ("Curiosity killed the", " cat"),
          ("Two wrongs don't make a", " right"), ("You can't judge a book by its", " cover"),
          ("Birds of a feather flock", " together"), ("Honesty is the best", " policy"),
          ("Time is", " money"), ("Knowledge is", " power"),
          ("Look before you", " leap"), ("Don't put all your eggs in one", " basket"),
          ("The grass is always greener on the other", " side"),
          ("Laughter is the best", " medicine"), ("Out of sight, out of", " mind"),
          ("Absence makes the heart grow", " fonder"), ("Beauty is in the eye of the",
                                                       " beholder"),
          ("Necessity is the mother of", " invention"), ("Slow and steady wins the", " race"),
          ("Strike while the iron is", " hot"), ("A penny saved is a penny", " earned"),
          ("Fortune favors the", " bold"), ("Ignorance is", " bliss"),
          ("Kill two birds with one", " stone"), ("Let sleeping dogs", " lie"),
          ("Once upon a", " time"), ("To be or not to", " be"),
          ("I think, therefore I", " am"), ("The quick brown fox jumps over the lazy", " dog"),
          ("Water boils at 100 degrees", " Celsius"), ("The sun rises in the", " east"),
          ("There are seven days in a", " week"), ("There are twelve months in a", " year"),
          ("Ice is frozen", " water"), ("Bees make", " honey"), ("Cows give us", " milk"),
          ("The opposite of hot is", " cold"), ("The opposite of up is", " down"),
          ("Monday, Tuesday,", " Wednesday"), ("January, February,", " March")]
for prompt, target in idioms:
    add("commonsense", prompt, target)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.jsonl")
with open(out, "w", encoding="utf-8") as f:
    for r in records:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
counts = {}
for r in records:
    counts[r["category"]] = counts.get(r["category"], 0) + 1
print(out, len(records), counts)
