"""Write the sample submissions in this folder: the reference solved in other styles, some right, most wrong.

Each file is named after the scenario it covers (as nbgrader's test notebooks are); ``EXPECTED_FAILURES`` holds,
for each, exactly the checks it must fail (every other check must pass). Run from the project root after changing
the reference:
PYTHONPATH=. python reference/assignment4/samples/make_samples.py
"""

from __future__ import annotations

import functools
from pathlib import Path

import nbformat

from autograder.lifecycle.release import solved_with

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parent / "assignment4.ipynb"


with_cells = functools.partial(solved_with, REFERENCE)     # a submission: the solved reference, named cells replaced


SCALING_PRINTS = """
print("X_train 各列の平均:", X_train.mean(axis=0)[:3].round(3), "標準偏差:", X_train.std(axis=0)[:3].round(3))
print("X_test  各列の平均:", X_test.mean(axis=0)[:3].round(3), "標準偏差:", X_test.std(axis=0)[:3].round(3))
"""

SAMPLES = {
    # --- wrong submissions: each misses the point its name says -----------------------------------------------------
    "submitted-leakage": with_cells(split="""
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

scaler = StandardScaler()
X_scaled = scaler.fit_transform(X)          # fitted on all 569 tumours, test set included
X_train, X_test, y_train, y_test = train_test_split(X_scaled, y, test_size=0.2, random_state=0, stratify=y)
print(X_train.shape, X_test.shape, y_train.shape, y_test.shape)
""", scaling="""
from sklearn.preprocessing import StandardScaler
""" + SCALING_PRINTS),
    "submitted-leakage-test-fit": with_cells(scaling="""
from sklearn.preprocessing import StandardScaler

scaler = StandardScaler()
X_train = scaler.fit_transform(X_train)
X_test = scaler.fit_transform(X_test)       # fitted again, on the test set
""" + SCALING_PRINTS),
    "submitted-no-stratify": with_cells(split="""
from sklearn.model_selection import train_test_split

X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
print(X_train.shape, X_test.shape, y_train.shape, y_test.shape)
"""),
    "submitted-softmax-output": with_cells(model="""
from keras.models import Sequential
from keras.layers import Dense, Dropout, Input

model = Sequential()
model.add(Input(shape=(30,)))
model.add(Dense(16, activation='relu'))
model.add(Dropout(0.2))
model.add(Dense(1, activation='softmax'))
model.summary()
"""),
    "submitted-no-restore-best-weights": with_cells(fit="""
from keras.callbacks import EarlyStopping

early_stopping = EarlyStopping(monitor='val_loss', patience=10)
result = model.fit(X_train, y_train, epochs=200, batch_size=32, validation_split=0.2, callbacks=[early_stopping])
"""),
    "submitted-no-early-stopping": with_cells(fit="""
result = model.fit(X_train, y_train, epochs=30, batch_size=32, validation_split=0.2)
"""),
    "submitted-sensitivity-on-train": with_cells(evaluate="""
from sklearn.metrics import recall_score, roc_auc_score

train_pred = (model.predict(X_train).ravel() >= 0.5).astype(int)
sensitivity = recall_score(y_train, train_pred)
auc = roc_auc_score(y_test, proba)
print(f"感度 (sensitivity): {sensitivity:.3f}")
print(f"AUC: {auc:.3f}")
"""),
    "submitted-auc-from-pred": with_cells(evaluate="""
from sklearn.metrics import recall_score, roc_auc_score

sensitivity = recall_score(y_test, pred)
auc = roc_auc_score(y_test, pred)
print(f"感度 (sensitivity): {sensitivity:.3f}")
print(f"AUC: {auc:.3f}")
"""),
    # metrics=['accuracy', 'AUC']: Keras records that AUC as 'AUC' / 'val_AUC', not under the name the lesson asks
    # for (auc / val_auc), so compile fails with a message saying how to name it.
    "submitted-auc-uppercase": with_cells(compile="""
import keras

model.compile(loss='binary_crossentropy', optimizer='Adam', metrics=['accuracy', 'AUC'])
"""),
    # --- the same solution in other Keras and scikit-learn styles: full marks -------------------------------------
    "style-functional-strings": with_cells(model="""
import keras

inputs = keras.Input(shape=(30,))
hidden = keras.layers.Dense(16, activation='relu')(inputs)
hidden = keras.layers.Dropout(0.2)(hidden)
outputs = keras.layers.Dense(1, activation='sigmoid')(hidden)
model = keras.Model(inputs, outputs)
model.summary()
""", compile="""
import keras

model.compile(loss=keras.losses.BinaryCrossentropy(), optimizer=keras.optimizers.Adam(), metrics=['acc', 'auc'])
""", fit="""
import tensorflow as tf

stop = tf.keras.callbacks.EarlyStopping(monitor='val_loss', patience=10, restore_best_weights=True)
result = model.fit(X_train, y_train, validation_split=0.2, epochs=200, batch_size=32, callbacks=[stop], verbose=0)
"""),
    "style-tf-keras-classes": with_cells(model="""
import tensorflow as tf

model = tf.keras.Sequential([
    tf.keras.Input(shape=(30,)),
    tf.keras.layers.Dense(16),
    tf.keras.layers.Activation('relu'),
    tf.keras.layers.Dropout(0.2),
    tf.keras.layers.Dense(1),
    tf.keras.layers.Activation(tf.nn.sigmoid),
])
model.summary()
""", compile="""
import tensorflow as tf

model.compile(loss=tf.keras.losses.binary_crossentropy, optimizer='adam',
              metrics=[tf.keras.metrics.BinaryAccuracy(), tf.keras.metrics.AUC])
""", predict="""
proba = model.predict(X_test)
pred = np.where(proba >= 0.5, 1, 0)
print(proba.shape, pred.shape)
""", evaluate="""
from sklearn.metrics import confusion_matrix, roc_auc_score

tn, fp, fn, tp = confusion_matrix(y_test, pred.ravel()).ravel()
sensitivity = tp / (tp + fn)
auc = roc_auc_score(y_test, proba.ravel())
print(f"感度 (sensitivity): {sensitivity:.3f}")
print(f"AUC: {auc:.3f}")
"""),
}

# Exactly the checks each sample fails; every other check must pass.
EXPECTED_FAILURES = {
    "submitted-leakage": {"scaling"},
    "submitted-leakage-test-fit": {"scaling"},
    "submitted-no-stratify": {"split"},
    "submitted-softmax-output": {"architecture", "test_auc"},
    "submitted-no-restore-best-weights": {"early_stopping"},
    "submitted-no-early-stopping": {"early_stopping"},
    "submitted-sensitivity-on-train": {"sensitivity"},
    "submitted-auc-from-pred": {"test_auc"},
    "submitted-auc-uppercase": {"compile"},
    "style-functional-strings": set(),
    "style-tf-keras-classes": set(),
}


def main() -> None:
    assert set(SAMPLES) == set(EXPECTED_FAILURES)
    for name, nb in SAMPLES.items():
        nbformat.validate(nb)
        (HERE / f"{name}.ipynb").write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        print(f"wrote {name}.ipynb")


if __name__ == "__main__":
    main()
